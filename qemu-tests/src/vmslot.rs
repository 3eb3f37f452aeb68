//! How many QEMU-heavy tests of one test binary may have VMs at once
//! (`OSAM_QEMU_VMS`, default 1: the machine has 2 cores, shared, and TCG
//! is slow). The scenarios (`tests/scenarios.rs`) and the fault cases
//! (`tests/fault_cases.rs`) take a [`VmSlot`] before their first VM.
//!
//! The count is per process: cargo runs the test binaries one after the
//! other, and `--test-threads=2` runs tests of one binary side by side.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How many tests may have VMs at once (`OSAM_QEMU_VMS`, default 1).
pub fn max_vms() -> usize {
    std::env::var("OSAM_QEMU_VMS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(1)
}

static RUNNING: Mutex<usize> = Mutex::new(0);
static FREED: Condvar = Condvar::new();

/// A place among the tests allowed VMs at once; given back on drop (also
/// when the test panics).
#[derive(Debug)]
pub struct VmSlot {
    waited: Duration,
}

impl VmSlot {
    /// Waits for a place.
    pub fn take() -> VmSlot {
        let start = Instant::now();
        let max = max_vms();
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= max {
            running = FREED.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
        VmSlot {
            waited: start.elapsed(),
        }
    }

    /// How long [`VmSlot::take`] waited for another test's VMs.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl Drop for VmSlot {
    fn drop(&mut self) {
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        *running = running.saturating_sub(1);
        FREED.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_given_back_on_drop() {
        let max = max_vms();
        let slots: Vec<VmSlot> = (0..max).map(|_| VmSlot::take()).collect();
        drop(slots);
        let again = VmSlot::take();
        assert!(again.waited() < Duration::from_secs(5));
    }
}
