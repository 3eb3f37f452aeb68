//! cloud-init: told not to regenerate the network configuration, which it
//! would otherwise rewrite from the (new) hardware on the next boot and
//! undo the renames. Its existing netplan file (`50-cloud-init.yaml`) is
//! kept and rewritten like any other.

/// The drop-in this step writes.
pub const DROP_IN: &str = "/etc/cloud/cloud.cfg.d/99-osam-disable-network-config.cfg";

/// The drop-in's contents.
pub const CONTENTS: &str = "# Written by OSAM: the network configuration was migrated; \
                            cloud-init must not regenerate it.\n\
                            network: {config: disabled}\n";

/// Whether the guest has cloud-init (its configuration directory).
pub const CONFIG_DIR: &str = "/etc/cloud";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drop_in_disables_network_config() {
        assert!(CONTENTS.ends_with("network: {config: disabled}\n"));
        assert!(DROP_IN.starts_with(CONFIG_DIR));
        assert!(DROP_IN.ends_with(".cfg"));
    }
}
