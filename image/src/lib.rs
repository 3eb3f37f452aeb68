//! osam-image library
