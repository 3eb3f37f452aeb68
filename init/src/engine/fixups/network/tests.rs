//! Fixture guests for the network planner: stock files of RHEL 7/8/9,
//! SLES, Ubuntu 18/20/22, Debian and systemd-networkd guests, bonds and
//! VLANs, a swap of names, `renameInterfaces: false`, and idempotence.

use super::*;
use crate::detect::{Bootloader, FirmwareHint, GuestInfo, OsFamily};
use crate::engine::identity::IdentityMap;
use crate::engine::plan::MemFiles;
use crate::protocol::config::{
    Arch, Firmware, FstabIdentifiers, Inputs, InterfaceMapping, NetworkInterfaceMap, NicModel,
    Options, ReplicaDiskMap, Source, StorageController, SystemConfiguration, Target,
};

fn inputs(nics: &[(&str, &str, &str)], rename: bool) -> Inputs {
    Inputs {
        system: SystemConfiguration {
            version: 1,
            migration_id: "mig-net".into(),
            source: Source {
                hostname: None,
                arch: Arch::X86_64,
                firmware: Firmware::Bios,
                os_family: None,
                os_version: None,
            },
            target: Target {
                firmware: Firmware::Bios,
                storage_controller: StorageController::Pvscsi,
                nic_model: NicModel::Vmxnet3,
            },
            options: Options {
                rename_interfaces: rename,
                fstab_identifiers: FstabIdentifiers::Uuid,
                ..Options::default()
            },
        },
        disks: ReplicaDiskMap {
            version: 1,
            disks: Vec::new(),
        },
        nics: NetworkInterfaceMap {
            version: 1,
            interfaces: nics
                .iter()
                .map(|(name, smac, tmac)| InterfaceMapping {
                    source_name: name.to_string(),
                    source_mac: smac.parse().expect("test MAC"),
                    target_mac: tmac.parse().expect("test MAC"),
                    target_name: None,
                })
                .collect(),
        },
    }
}

/// ens192 → eth0, ens224 → eth1.
fn two(rename: bool) -> Inputs {
    inputs(
        &[
            ("ens192", "52:54:00:12:34:56", "00:50:56:9a:00:01"),
            ("ens224", "52:54:00:12:34:57", "00:50:56:9a:00:02"),
        ],
        rename,
    )
}

fn info(family: OsFamily, init: InitSystem) -> GuestInfo {
    GuestInfo {
        os_id: "test".into(),
        os_version: "1".into(),
        pretty_name: "Test".into(),
        family,
        arch: "x86_64".into(),
        init_system: init,
        bootloader: Bootloader::Grub2,
        firmware: FirmwareHint::Bios,
        kernels: Vec::new(),
        root: None,
    }
}

fn run(files: &MemFiles, inputs: &Inputs, init: InitSystem) -> Plan {
    let info = info(OsFamily::Rhel, init);
    let identity = IdentityMap::default();
    let ctx = PlanCtx {
        files,
        info: &info,
        inputs,
        identity: &identity,
        stack_arch: "x86_64",
        boot_device: None,
    };
    plan(&ctx).expect("plan")
}

/// What the executor would leave.
fn apply(files: &MemFiles, plan: &Plan) -> MemFiles {
    let mut out = files.clone();
    for e in &plan.edits {
        match e {
            Edit::Write { path, contents, .. } => {
                out.files.insert(path.clone(), contents.clone());
            }
            Edit::Remove { path } => {
                out.files.remove(path);
            }
            Edit::Rename { from, to, contents } => {
                out.files.remove(from);
                out.files.insert(to.clone(), contents.clone());
            }
            Edit::Symlink { path, target } => {
                out.links.insert(path.clone(), target.clone());
            }
            Edit::Preserve { .. } => {}
        }
    }
    out
}

fn file(files: &MemFiles, path: &str) -> String {
    files
        .files
        .get(path)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_else(|| panic!("{path} missing"))
}

fn codes_of(plan: &Plan) -> Vec<&str> {
    plan.warnings.iter().map(|w| w.code.as_str()).collect()
}

/// Plans, applies, checks that no stale reference is left and that a
/// second run changes nothing; gives the plan and the guest after it.
fn run_and_check(files: &MemFiles, inputs: &Inputs, init: InitSystem) -> (Plan, MemFiles) {
    let plan = run(files, inputs, init);
    assert!(
        !codes_of(&plan).contains(&codes::NETWORK_STALE_REFERENCE),
        "{:#?}",
        plan.warnings
    );
    let after = apply(files, &plan);
    let again = run(&after, inputs, init);
    assert_eq!(again.edits, Vec::new(), "second run: {}", again.summary);
    (plan, after)
}

const RHEL7_ENS192: &str = "\
TYPE=Ethernet
BOOTPROTO=none
DEFROUTE=yes
NAME=ens192
UUID=3d4e6f5a-1b2c-4b7e-9c1d-0a1b2c3d4e5f
DEVICE=ens192
ONBOOT=yes
IPADDR=192.168.10.5
PREFIX=24
GATEWAY=192.168.10.1
HWADDR=52:54:00:12:34:56
";

const RHEL7_ENS224: &str = "\
TYPE=Ethernet
BOOTPROTO=dhcp
NAME=ens224
DEVICE=ens224
ONBOOT=yes
HWADDR=52:54:00:12:34:57
";

#[test]
fn rhel7_ifcfg_routes_udev_link_and_cloud_init() {
    let guest = MemFiles::new()
        .with("/etc/sysconfig/network-scripts/ifcfg-ens192", RHEL7_ENS192)
        .with("/etc/sysconfig/network-scripts/ifcfg-ens224", RHEL7_ENS224)
        .with("/etc/sysconfig/network-scripts/ifcfg-lo", "DEVICE=lo\n")
        .with(
            "/etc/sysconfig/network-scripts/route-ens192",
            "10.1.0.0/16 via 192.168.10.254 dev ens192\n",
        )
        .with(
            "/etc/sysconfig/network-scripts/ifup-eth",
            "# ens192 script\n",
        )
        .with(
            "/etc/sysconfig/network",
            "NETWORKING=yes\nGATEWAYDEV=ens192\n",
        )
        .with("/etc/cloud/cloud.cfg", "users: [default]\n");
    let inputs = two(true);
    let (plan, after) = run_and_check(&guest, &inputs, InitSystem::Systemd);
    assert_eq!(
        plan.summary,
        "2 NICs renamed (ens192->eth0, ens224->eth1) in 8 files"
    );
    assert!(plan.warnings.is_empty(), "{:#?}", plan.warnings);
    let ifcfg = file(&after, "/etc/sysconfig/network-scripts/ifcfg-eth0");
    assert!(ifcfg.contains("NAME=eth0\n") && ifcfg.contains("DEVICE=eth0\n"));
    assert!(ifcfg.contains("HWADDR=00:50:56:9a:00:01\n"));
    assert!(ifcfg.contains("UUID=3d4e6f5a-1b2c-4b7e-9c1d-0a1b2c3d4e5f\n"));
    assert!(
        !after
            .files
            .contains_key("/etc/sysconfig/network-scripts/ifcfg-ens192")
    );
    assert_eq!(
        file(&after, "/etc/sysconfig/network-scripts/route-eth0"),
        "10.1.0.0/16 via 192.168.10.254 dev eth0\n"
    );
    assert_eq!(
        file(&after, "/etc/sysconfig/network"),
        "NETWORKING=yes\nGATEWAYDEV=eth0\n"
    );
    // ifup-eth is a script, not configuration.
    assert_eq!(
        file(&after, "/etc/sysconfig/network-scripts/ifup-eth"),
        "# ens192 script\n"
    );
    assert!(
        plan.edits.contains(&Edit::Rename {
            from: "/etc/sysconfig/network-scripts/ifcfg-ens224".into(),
            to: "/etc/sysconfig/network-scripts/ifcfg-eth1".into(),
            contents: RHEL7_ENS224
                .replace("ens224", "eth1")
                .replace("52:54:00:12:34:57", "00:50:56:9a:00:02")
                .into_bytes(),
        })
    );
    let link = file(&after, "/etc/systemd/network/10-osam-eth1.link");
    assert!(link.contains("MACAddress=00:50:56:9a:00:02\n") && link.contains("Name=eth1\n"));
    assert_eq!(
        file(&after, cloudinit::DROP_IN),
        "# Written by OSAM: the network configuration was migrated; cloud-init must not \
         regenerate it.\nnetwork: {config: disabled}\n"
    );
    let rules = file(&after, udev::PERSISTENT_RULES);
    assert!(rules.contains(
        "SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", \
         ATTR{address}==\"00:50:56:9a:00:01\", ATTR{type}==\"1\", NAME=\"eth0\"\n"
    ));
    // The udev rules are the last edit.
    assert_eq!(
        plan.edits.last().map(|e| e.paths()),
        Some(vec![udev::PERSISTENT_RULES])
    );
}

#[test]
fn rhel6_persistent_net_rules_are_rewritten_without_link_files() {
    let rules = "# PCI device 0x8086:0x100e (e1000)\n\
                 SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", ATTR{address}==\"52:54:00:12:34:56\", ATTR{type}==\"1\", KERNEL==\"eth*\", NAME=\"eth0\"\n";
    let guest = MemFiles::new().with(udev::PERSISTENT_RULES, rules).with(
        "/etc/sysconfig/network-scripts/ifcfg-eth0",
        "DEVICE=eth0\nHWADDR=52:54:00:12:34:56\nONBOOT=yes\n",
    );
    let inputs = inputs(&[("eth0", "52:54:00:12:34:56", "00:50:56:9a:00:01")], true);
    let (plan, after) = run_and_check(&guest, &inputs, InitSystem::Sysvinit);
    assert_eq!(
        plan.summary,
        "1 NIC already named as in the target in 2 files"
    );
    assert_eq!(
        file(&after, "/etc/sysconfig/network-scripts/ifcfg-eth0"),
        "DEVICE=eth0\nHWADDR=00:50:56:9a:00:01\nONBOOT=yes\n"
    );
    let rules = file(&after, udev::PERSISTENT_RULES);
    assert!(!rules.contains("52:54:00:12:34:56"), "{rules}");
    assert!(!after.files.keys().any(|k| k.ends_with(".link")));
}

#[test]
fn rhel8_bond_vlan_and_bridge() {
    let dir = "/etc/sysconfig/network-scripts";
    let guest = MemFiles::new()
        .with(
            &format!("{dir}/ifcfg-bond0"),
            "DEVICE=bond0\nTYPE=Bond\nBONDING_MASTER=yes\nBONDING_OPTS=\"mode=active-backup primary=ens192\"\nBRIDGE=br0\n",
        )
        .with(
            &format!("{dir}/ifcfg-ens192"),
            "DEVICE=ens192\nNAME=bond-slave-ens192\nMASTER=bond0\nSLAVE=yes\nHWADDR=52:54:00:12:34:56\n",
        )
        .with(
            &format!("{dir}/ifcfg-ens224"),
            "DEVICE=ens224\nNAME=bond-slave-ens224\nMASTER=bond0\nSLAVE=yes\n",
        )
        .with(
            &format!("{dir}/ifcfg-ens192.100"),
            "VLAN=yes\nDEVICE=ens192.100\nPHYSDEV=ens192\nIPADDR=10.0.100.5\n",
        )
        .with(&format!("{dir}/ifcfg-br0"), "DEVICE=br0\nTYPE=Bridge\n");
    let (plan, after) = run_and_check(&guest, &two(true), InitSystem::Systemd);
    assert!(plan.warnings.is_empty(), "{:#?}", plan.warnings);
    assert_eq!(
        file(&after, &format!("{dir}/ifcfg-bond0")),
        "DEVICE=bond0\nTYPE=Bond\nBONDING_MASTER=yes\nBONDING_OPTS=\"mode=active-backup primary=eth0\"\nBRIDGE=br0\n"
    );
    assert_eq!(
        file(&after, &format!("{dir}/ifcfg-eth0.100")),
        "VLAN=yes\nDEVICE=eth0.100\nPHYSDEV=eth0\nIPADDR=10.0.100.5\n"
    );
    assert_eq!(
        file(&after, &format!("{dir}/ifcfg-eth1")),
        "DEVICE=eth1\nNAME=bond-slave-eth1\nMASTER=bond0\nSLAVE=yes\n"
    );
    assert!(!after.files.keys().any(|k| k.contains("ens")));
}

#[test]
fn rhel9_keyfile_is_renamed_and_keeps_its_mode() {
    let keyfile = "[connection]\nid=ens192\nuuid=2f1b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d\ntype=ethernet\ninterface-name=ens192\n\n[ethernet]\nmac-address=52:54:00:12:34:56\n\n[ipv4]\nmethod=auto\n";
    let guest = MemFiles::new()
        .with(
            "/etc/NetworkManager/system-connections/ens192.nmconnection",
            keyfile,
        )
        .with(
            "/etc/NetworkManager/system-connections/Wired connection 2.nmconnection",
            "[connection]\nid=Wired connection 2\ntype=ethernet\n\n[ethernet]\nmac-address=52:54:00:12:34:57\n",
        )
        .with(
            "/etc/NetworkManager/conf.d/10-unmanaged.conf",
            "[keyfile]\nunmanaged-devices=interface-name:ens224\n",
        );
    let (plan, after) = run_and_check(&guest, &two(true), InitSystem::Systemd);
    let new = file(
        &after,
        "/etc/NetworkManager/system-connections/eth0.nmconnection",
    );
    assert!(new.contains("id=eth0\n") && new.contains("interface-name=eth0\n"));
    assert!(new.contains("mac-address=00:50:56:9a:00:01\n"));
    assert!(new.contains("uuid=2f1b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d\n"));
    // A rename keeps the file's mode (0600).
    assert!(
        plan.edits
            .iter()
            .any(|e| matches!(e, Edit::Rename { to, .. } if to.ends_with("eth0.nmconnection")))
    );
    assert!(
        file(
            &after,
            "/etc/NetworkManager/system-connections/Wired connection 2.nmconnection"
        )
        .contains("mac-address=00:50:56:9a:00:02\n")
    );
    assert_eq!(
        file(&after, "/etc/NetworkManager/conf.d/10-unmanaged.conf"),
        "[keyfile]\nunmanaged-devices=interface-name:eth1\n"
    );
}

#[test]
fn ubuntu18_netplan_from_cloud_init() {
    let netplan = "# This file is generated from information provided by the datasource.\n\
                   network:\n    ethernets:\n        ens192:\n            dhcp4: true\n            match:\n                macaddress: 52:54:00:12:34:56\n            set-name: ens192\n    version: 2\n";
    let guest = MemFiles::new()
        .with("/etc/netplan/50-cloud-init.yaml", netplan)
        .with("/etc/cloud/cloud.cfg", "network: {}\n");
    let inputs = inputs(
        &[("ens192", "52:54:00:12:34:56", "00:50:56:9a:00:01")],
        true,
    );
    let (plan, after) = run_and_check(&guest, &inputs, InitSystem::Systemd);
    assert_eq!(plan.summary, "1 NIC renamed (ens192->eth0) in 4 files");
    assert_eq!(
        file(&after, "/etc/netplan/50-cloud-init.yaml"),
        "# This file is generated from information provided by the datasource.\n\
         network:\n    ethernets:\n        eth0:\n            dhcp4: true\n            match:\n                macaddress: 00:50:56:9a:00:01\n            set-name: eth0\n    version: 2\n"
    );
    assert!(after.files.contains_key(cloudinit::DROP_IN));
}

#[test]
fn ubuntu20_installer_netplan_and_ubuntu22_bond() {
    let guest = MemFiles::new()
        .with(
            "/etc/netplan/00-installer-config.yaml",
            "network:\n  ethernets:\n    ens192:\n      dhcp4: true\n    ens224:\n      dhcp4: false\n  bonds:\n    bond0:\n      interfaces: [ens192, ens224]\n  vlans:\n    vlan10:\n      id: 10\n      link: bond0\n  version: 2\n",
        );
    let (_, after) = run_and_check(&guest, &two(true), InitSystem::Systemd);
    let text = file(&after, "/etc/netplan/00-installer-config.yaml");
    assert!(text.contains("    eth0:\n      dhcp4: true\n    eth1:\n"));
    assert!(text.contains("interfaces: [eth0, eth1]"));
}

#[test]
fn debian_interfaces_with_source_directory_and_globs() {
    let guest = MemFiles::new()
        .with(
            "/etc/network/interfaces",
            "source-directory interfaces.d\nsource /etc/network/extra/*.cfg\n\nauto lo\niface lo inet loopback\n\nallow-hotplug ens192\niface ens192 inet dhcp\n",
        )
        .with(
            "/etc/network/interfaces.d/ens224",
            "auto ens224\niface ens224 inet static\n    address 10.0.0.5/24\n    hwaddress ether 52:54:00:12:34:57\n",
        )
        .with("/etc/network/interfaces.d/skipped.bak", "auto ens224\n")
        .with("/etc/network/extra/vlan.cfg", "auto ens192.10\niface ens192.10 inet manual\n    vlan-raw-device ens192\n")
        .with("/etc/network/extra/not-sourced.txt", "auto ens192\n");
    let (plan, after) = run_and_check(&guest, &two(true), InitSystem::Sysvinit);
    assert!(
        file(&after, "/etc/network/interfaces")
            .contains("allow-hotplug eth0\niface eth0 inet dhcp\n")
    );
    assert!(file(&after, "/etc/network/interfaces").starts_with("source-directory interfaces.d\n"));
    assert_eq!(
        file(&after, "/etc/network/interfaces.d/ens224"),
        "auto eth1\niface eth1 inet static\n    address 10.0.0.5/24\n    hwaddress ether 00:50:56:9a:00:02\n"
    );
    assert_eq!(
        file(&after, "/etc/network/extra/vlan.cfg"),
        "auto eth0.10\niface eth0.10 inet manual\n    vlan-raw-device eth0\n"
    );
    // Not sourced: not live, not touched.
    assert_eq!(
        file(&after, "/etc/network/interfaces.d/skipped.bak"),
        "auto ens224\n"
    );
    assert_eq!(
        file(&after, "/etc/network/extra/not-sourced.txt"),
        "auto ens192\n"
    );
    assert_eq!(
        plan.summary,
        "2 NICs renamed (ens192->eth0, ens224->eth1) in 4 files"
    );
}

#[test]
fn interfaces_source_loops_end() {
    let guest = MemFiles::new().with(
        "/etc/network/interfaces",
        "source /etc/network/interfaces\nauto ens192\n",
    );
    let plan = run(&guest, &two(true), InitSystem::Sysvinit);
    assert!(
        plan.edits
            .iter()
            .any(|e| e.paths() == vec!["/etc/network/interfaces"])
    );
}

#[test]
fn sles_ifcfg_ifroute_and_routes() {
    let dir = "/etc/sysconfig/network";
    let guest = MemFiles::new()
        .with(
            &format!("{dir}/ifcfg-ens192"),
            "BOOTPROTO='static'\nSTARTMODE='auto'\nIPADDR='192.168.1.5/24'\nNAME='ens192'\n",
        )
        .with(&format!("{dir}/ifroute-ens192"), "10.0.0.0/8 192.168.1.254 - ens192\n")
        .with(&format!("{dir}/routes"), "default 192.168.1.1 - ens192\n")
        .with(&format!("{dir}/config"), "NETCONFIG_DNS_POLICY=\"auto\"\n")
        .with(
            udev::PERSISTENT_RULES,
            "SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", ATTR{address}==\"52:54:00:12:34:56\", ATTR{type}==\"1\", KERNEL==\"eth*\", NAME=\"ens192\"\n",
        );
    let (_, after) = run_and_check(&guest, &two(true), InitSystem::Systemd);
    assert_eq!(
        file(&after, &format!("{dir}/ifcfg-eth0")),
        "BOOTPROTO='static'\nSTARTMODE='auto'\nIPADDR='192.168.1.5/24'\nNAME='eth0'\n"
    );
    assert_eq!(
        file(&after, &format!("{dir}/ifroute-eth0")),
        "10.0.0.0/8 192.168.1.254 - eth0\n"
    );
    assert_eq!(
        file(&after, &format!("{dir}/routes")),
        "default 192.168.1.1 - eth0\n"
    );
    assert!(!file(&after, udev::PERSISTENT_RULES).contains("ens192"));
}

#[test]
fn systemd_networkd_files_and_globs() {
    let guest = MemFiles::new()
        .with(
            "/etc/systemd/network/10-ens192.network",
            "[Match]\nName=ens192\n\n[Network]\nAddress=192.168.10.5/24\nVLAN=ens192.100\n",
        )
        .with(
            "/etc/systemd/network/20-ens192.100.netdev",
            "[NetDev]\nName=ens192.100\nKind=vlan\n\n[VLAN]\nId=100\n",
        )
        .with(
            "/etc/systemd/network/30-persistent.link",
            "[Match]\nMACAddress=52:54:00:12:34:57\n\n[Link]\nName=ens224\n",
        )
        .with(
            "/etc/systemd/network/99-dhcp.network",
            "[Match]\nName=en*\n\n[Network]\nDHCP=yes\n",
        )
        .with(
            "/etc/systemd/network/10-osam-old.link",
            "[Link]\nName=old\n",
        );
    let plan = run(&guest, &two(true), InitSystem::Systemd);
    assert_eq!(codes_of(&plan), vec![codes::NETWORK_GLOB_MATCH]);
    assert!(
        plan.warnings[0]
            .message
            .starts_with("/etc/systemd/network/99-dhcp.network:2: ")
    );
    let after = apply(&guest, &plan);
    assert_eq!(
        file(&after, "/etc/systemd/network/10-eth0.network"),
        "[Match]\nName=eth0\n\n[Network]\nAddress=192.168.10.5/24\nVLAN=eth0.100\n"
    );
    assert_eq!(
        file(&after, "/etc/systemd/network/20-eth0.100.netdev"),
        "[NetDev]\nName=eth0.100\nKind=vlan\n\n[VLAN]\nId=100\n"
    );
    assert_eq!(
        file(&after, "/etc/systemd/network/30-persistent.link"),
        "[Match]\nMACAddress=00:50:56:9a:00:02\n\n[Link]\nName=eth1\n"
    );
    assert!(
        !after
            .files
            .contains_key("/etc/systemd/network/10-osam-old.link")
    );
    assert!(
        after
            .files
            .contains_key("/etc/systemd/network/10-osam-eth0.link")
    );
    assert_eq!(
        run(&after, &two(true), InitSystem::Systemd).edits,
        Vec::new()
    );
}

#[test]
fn a_swap_of_names_never_collides() {
    // eth1 (source) becomes eth0; ens192 becomes eth1.
    let inputs = inputs(
        &[
            ("eth1", "52:54:00:00:00:01", "00:50:56:9a:00:01"),
            ("ens192", "52:54:00:00:00:02", "00:50:56:9a:00:02"),
        ],
        true,
    );
    let dir = "/etc/sysconfig/network-scripts";
    let guest = MemFiles::new()
        .with(
            &format!("{dir}/ifcfg-eth1"),
            "DEVICE=eth1\nHWADDR=52:54:00:00:00:01\n",
        )
        .with(
            &format!("{dir}/ifcfg-ens192"),
            "DEVICE=ens192\nHWADDR=52:54:00:00:00:02\n",
        )
        .with("/etc/sysconfig/network", "GATEWAYDEV=eth1\n");
    let (plan, after) = run_and_check(&guest, &inputs, InitSystem::Systemd);
    assert_eq!(
        plan.summary,
        "2 NICs renamed (eth1->eth0, ens192->eth1) in 6 files"
    );
    // eth1 is both left and taken: written, not renamed.
    assert!(!plan.edits.iter().any(|e| matches!(e, Edit::Rename { .. })));
    assert!(plan.edits.contains(&Edit::Remove {
        path: format!("{dir}/ifcfg-ens192")
    }));
    assert_eq!(
        file(&after, &format!("{dir}/ifcfg-eth0")),
        "DEVICE=eth0\nHWADDR=00:50:56:9a:00:01\n"
    );
    assert_eq!(
        file(&after, &format!("{dir}/ifcfg-eth1")),
        "DEVICE=eth1\nHWADDR=00:50:56:9a:00:02\n"
    );
    assert!(!after.files.contains_key(&format!("{dir}/ifcfg-ens192")));
    assert_eq!(file(&after, "/etc/sysconfig/network"), "GATEWAYDEV=eth0\n");
    // The second run knows the names are done.
    assert!(
        run(&after, &inputs, InitSystem::Systemd)
            .summary
            .starts_with("2 NICs already renamed")
    );

    // A later reference to a source name is reported, not renamed.
    let later = after.with(
        "/etc/udev/rules.d/80-ens192.rules",
        "KERNEL==\"ens192\", RUN+=\"/bin/true\"\n",
    );
    let plan = run(&later, &inputs, InitSystem::Systemd);
    assert_eq!(plan.edits, Vec::new());
    assert_eq!(codes_of(&plan), vec![codes::NETWORK_STALE_REFERENCE]);
    assert!(
        plan.warnings[0]
            .message
            .contains("/etc/udev/rules.d/80-ens192.rules:1: ")
    );
}

#[test]
fn a_rename_onto_a_leftover_file_replaces_it() {
    let dir = "/etc/sysconfig/network-scripts";
    let guest = MemFiles::new()
        .with(&format!("{dir}/ifcfg-eth0"), "DEVICE=eth0\nONBOOT=no\n")
        .with(
            &format!("{dir}/ifcfg-ens192"),
            "DEVICE=ens192\nONBOOT=yes\n",
        );
    let inputs = inputs(
        &[("ens192", "52:54:00:12:34:56", "00:50:56:9a:00:01")],
        true,
    );
    let plan = run(&guest, &inputs, InitSystem::Sysvinit);
    assert_eq!(codes_of(&plan), vec![codes::NETWORK_FILE_REPLACED]);
    let after = apply(&guest, &plan);
    assert_eq!(
        file(&after, &format!("{dir}/ifcfg-eth0")),
        "DEVICE=eth0\nONBOOT=yes\n"
    );
    assert!(!after.files.contains_key(&format!("{dir}/ifcfg-ens192")));
    assert_eq!(run(&after, &inputs, InitSystem::Sysvinit).edits, Vec::new());
}

#[test]
fn names_kept_macs_moved_without_rename() {
    let guest = MemFiles::new()
        .with("/etc/sysconfig/network-scripts/ifcfg-ens192", RHEL7_ENS192)
        .with(
            "/etc/netplan/01-netcfg.yaml",
            "network:\n  ethernets:\n    ens224:\n      match:\n        macaddress: 52:54:00:12:34:57\n      set-name: ens224\n",
        );
    let (plan, after) = run_and_check(&guest, &two(false), InitSystem::Systemd);
    assert_eq!(
        plan.summary,
        "2 NIC names kept, MAC pins moved to the target MACs in 5 files"
    );
    let ifcfg = file(&after, "/etc/sysconfig/network-scripts/ifcfg-ens192");
    assert!(ifcfg.contains("DEVICE=ens192\n") && ifcfg.contains("HWADDR=00:50:56:9a:00:01\n"));
    assert!(
        file(&after, "/etc/netplan/01-netcfg.yaml")
            .contains("macaddress: 00:50:56:9a:00:02\n      set-name: ens224\n")
    );
    // The names are pinned to the target MACs all the same.
    assert!(
        file(&after, udev::PERSISTENT_RULES)
            .contains("ATTR{address}==\"00:50:56:9a:00:01\", ATTR{type}==\"1\", NAME=\"ens192\"")
    );
    assert!(file(&after, "/etc/systemd/network/10-osam-ens192.link").contains("Name=ens192\n"));
}

#[test]
fn an_empty_map_changes_nothing() {
    let guest = MemFiles::new().with("/etc/sysconfig/network-scripts/ifcfg-ens192", RHEL7_ENS192);
    let plan = run(&guest, &inputs(&[], true), InitSystem::Systemd);
    assert!(plan.is_empty());
    assert_eq!(plan.summary, "no NICs in network-interface-map.json");
}

#[test]
fn unreadable_files_are_warnings() {
    let mut guest = MemFiles::new().with("/etc/netplan/a.yaml", "network: {}\n");
    guest
        .special
        .insert("/etc/netplan/b.yaml".into(), crate::guestfs::FileKind::Fifo);
    let plan = run(&guest, &two(true), InitSystem::Systemd);
    assert_eq!(codes_of(&plan), vec![codes::NETWORK_UNREADABLE]);
}
