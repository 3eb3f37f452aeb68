//! Fixture guests: debian_family (see the parent file for the harness).

use super::*;
