//! The model test.
