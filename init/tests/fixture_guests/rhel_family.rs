//! Fixture guests: rhel_family (see the parent file for the harness).

use super::*;
