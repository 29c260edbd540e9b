//! Black-box tests of the whole workspace, compiled into one binary.
