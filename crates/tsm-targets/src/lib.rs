//! tsm-targets
