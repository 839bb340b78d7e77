//! tsm-nn
