//! tsm-experiments
