//! tsm-core
