//! Subjects and patterns (being written).
