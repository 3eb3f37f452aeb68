//! Stage-2 preparation: save what stage 2 restores (the systemd default
//! target, `/etc/inittab`, upstart's `rc-sysinit.conf`, the SELinux mode)
//! under `data/`, switch the guest to single-user mode, and install the
//! in-guest hook that runs the stage-2 agent there: a systemd unit ordered
//! before `rescue.service` (whose `sulogin` would otherwise wait for a
//! password) or, on SysV/upstart guests, an rc script that runs first in
//! run level 1. SELinux goes to permissive until stage 2 has run
//! `restorecon` on what stage 1 wrote; without stage 2 a relabel on next
//! boot (`/.autorelabel`) covers the new files instead.
//!
//! Without the agent binary the guest is not switched: a guest left in
//! single-user mode with nothing to bring it back would not come up.

use crate::detect::InitSystem;
use crate::engine::plan::{Edit, GuestFiles, Plan, PlanCtx};
use crate::error::{FixupError, Warning, codes};

/// Where the agent goes in the guest.
pub const AGENT: &str = "/opt/vmware/hcx/osam/bin/osam-stage2";
pub const UNIT: &str = "/etc/systemd/system/osam-stage2.service";
pub const UNIT_WANTS: &str = "/etc/systemd/system/rescue.target.wants/osam-stage2.service";
pub const DEFAULT_TARGET: &str = "/etc/systemd/system/default.target";
pub const SAVED_TARGET: &str = "/opt/vmware/hcx/osam/data/systemd-default-target";
pub const SAVED_INITTAB: &str = "/opt/vmware/hcx/osam/data/inittab";
pub const SAVED_RC_SYSINIT: &str = "/opt/vmware/hcx/osam/data/rc-sysinit.conf";
pub const SAVED_SELINUX: &str = "/opt/vmware/hcx/osam/data/selinux-mode";
pub const RC_SCRIPT_NAME: &str = "osam-stage2";

/// The systemd unit of the hook. It runs after
/// `systemd-tmpfiles-setup.service`, which empties `/tmp` at boot
/// (`D /tmp` in tmp.conf) and would remove the agent's mount point for the
/// Tools ISO under it while the agent runs.
pub fn unit_text() -> String {
    format!(
        "# Installed by the OSAM fixup stack (stage 1); removed by stage 2.\n\
         [Unit]\n\
         Description=OSAM stage 2: VMware Tools and the original boot target\n\
         DefaultDependencies=no\n\
         Requires=local-fs.target\n\
         After=local-fs.target systemd-udevd.service systemd-tmpfiles-setup.service\n\
         Before=rescue.service emergency.service\n\
         ConditionPathExists={AGENT}\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={AGENT}\n\
         StandardOutput=journal+console\n\
         StandardError=journal+console\n\
         TimeoutStartSec=3600\n\
         RemainAfterExit=yes\n\
         \n\
         [Install]\n\
         WantedBy=rescue.target\n"
    )
}

/// The SysV rc script of the hook (run level 1, first).
pub fn rc_script_text() -> String {
    format!(
        "#!/bin/sh\n\
         # Installed by the OSAM fixup stack (stage 1); removed by stage 2.\n\
         ### BEGIN INIT INFO\n\
         # Provides:          {RC_SCRIPT_NAME}\n\
         # Required-Start:    $local_fs\n\
         # Required-Stop:\n\
         # Default-Start:     1\n\
         # Default-Stop:\n\
         # Short-Description: OSAM stage 2\n\
         ### END INIT INFO\n\
         case \"$1\" in\n\
         \x20 start|\"\") [ -x {AGENT} ] && exec {AGENT} ;;\n\
         esac\n\
         exit 0\n"
    )
}

/// `id:5:initdefault:` → (new text with run level 1, old level).
pub fn inittab_single_user(text: &str) -> Option<(String, String)> {
    let mut old = None;
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let fields: Vec<&str> = body.split(':').collect();
        if old.is_none()
            && !body.trim_start().starts_with('#')
            && fields.len() == 4
            && fields[2] == "initdefault"
        {
            old = Some(fields[1].to_string());
            out.push_str(&format!("{}:1:initdefault:{}", fields[0], fields[3]));
            out.push_str(&line[body.len()..]);
        } else {
            out.push_str(line);
        }
    }
    old.map(|o| (out, o))
}

/// Upstart: `env DEFAULT_RUNLEVEL=2` → run level 1.
pub fn rc_sysinit_single_user(text: &str) -> Option<(String, String)> {
    let mut old = None;
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let t = body.trim_start();
        if old.is_none() {
            if let Some(v) = t.strip_prefix("env DEFAULT_RUNLEVEL=") {
                old = Some(v.trim().to_string());
                let indent = &body[..body.len() - t.len()];
                out.push_str(&format!("{indent}env DEFAULT_RUNLEVEL=1"));
                out.push_str(&line[body.len()..]);
                continue;
            }
        }
        out.push_str(line);
    }
    old.map(|o| (out, o))
}

/// `SELINUX=enforcing` → (text with `SELINUX=permissive`, old mode).
pub fn selinux_mode(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.trim().strip_prefix("SELINUX=")?;
        Some(v.trim().trim_matches('"').to_ascii_lowercase())
    })
}

pub fn selinux_set(text: &str, mode: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut done = false;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        if !done && body.trim().starts_with("SELINUX=") {
            out.push_str(&format!("SELINUX={mode}"));
            out.push_str(&line[body.len()..]);
            done = true;
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Saves an original for stage 2, once: a second stage 1 must not save
/// what the first one made (single-user mode) as the original.
fn save_once(files: &dyn GuestFiles, plan: &mut Plan, path: &str, contents: impl Into<Vec<u8>>) {
    if !files.exists(path) {
        plan.edits.push(Edit::write(path, contents));
    }
}

fn first_existing<'a>(files: &dyn GuestFiles, paths: &[&'a str]) -> Option<&'a str> {
    paths.iter().copied().find(|p| files.exists(p))
}

fn io_error(path: &str, e: std::io::Error) -> FixupError {
    FixupError::new(codes::GUEST_IO, format!("reading {path} in the guest: {e}"))
}

/// Plans stage-2 preparation. `agent` is the stage-2 binary to install
/// (for the guest's architecture); without it the guest is not switched.
pub fn plan_with_agent(ctx: &PlanCtx, agent: Option<&[u8]>) -> Result<Plan, FixupError> {
    let files = ctx.files;
    let want_stage2 = ctx.inputs.system.options.stage2;
    let mut plan = Plan::default();
    let mut done: Vec<String> = Vec::new();
    let switch = want_stage2 && agent.is_some();
    if want_stage2 && agent.is_none() {
        plan.warnings.push(Warning::new(
            codes::STAGE2_AGENT_MISSING,
            "this stack has no stage-2 agent for the guest: the guest keeps its boot target \
             and VMware Tools must be installed by hand",
        ));
    }

    // The boot target: what switches it, and the hook that runs the agent.
    let mut switch_edits: Vec<Edit> = Vec::new();
    let mut hook_edits: Vec<Edit> = Vec::new();
    let mut switched: Vec<String> = Vec::new();
    match ctx.info.init_system {
        InitSystem::Systemd => {
            let old = files.read_link(DEFAULT_TARGET).unwrap_or_default();
            save_once(files, &mut plan, SAVED_TARGET, format!("{old}\n"));
            let rescue = first_existing(
                files,
                &[
                    "/usr/lib/systemd/system/rescue.target",
                    "/lib/systemd/system/rescue.target",
                ],
            )
            .unwrap_or("/usr/lib/systemd/system/rescue.target");
            switch_edits.push(Edit::Symlink {
                path: DEFAULT_TARGET.into(),
                target: rescue.into(),
            });
            switched.push(format!(
                "default target {} -> rescue.target",
                if old.is_empty() {
                    "(distribution default)"
                } else {
                    old.as_str()
                }
            ));
            hook_edits.push(Edit::write(UNIT, unit_text()));
            hook_edits.push(Edit::Symlink {
                path: UNIT_WANTS.into(),
                target: UNIT.into(),
            });
        }
        InitSystem::Sysvinit | InitSystem::Upstart | InitSystem::Openrc | InitSystem::Unknown => {
            if let Some(text) = files
                .read("/etc/inittab")
                .map_err(|e| io_error("/etc/inittab", e))?
            {
                save_once(files, &mut plan, SAVED_INITTAB, text.clone());
                if let Some((new, old)) = inittab_single_user(&text) {
                    switch_edits.push(Edit::write("/etc/inittab", new));
                    switched.push(format!("run level {old} -> 1 (/etc/inittab)"));
                }
            }
            let rcs = "/etc/init/rc-sysinit.conf";
            if let Some(text) = files.read(rcs).map_err(|e| io_error(rcs, e))? {
                save_once(files, &mut plan, SAVED_RC_SYSINIT, text.clone());
                if switch_edits.is_empty() {
                    if let Some((new, old)) = rc_sysinit_single_user(&text) {
                        switch_edits.push(Edit::write(rcs, new));
                        switched.push(format!("run level {old} -> 1 ({rcs})"));
                    }
                }
            }
            let init_d = first_existing(files, &["/etc/rc.d/init.d", "/etc/init.d"])
                .unwrap_or("/etc/init.d");
            let rc1 = first_existing(
                files,
                &["/etc/rc.d/rc1.d", "/etc/rc1.d", "/etc/init.d/rc1.d"],
            )
            .unwrap_or("/etc/rc1.d");
            let script = format!("{init_d}/{RC_SCRIPT_NAME}");
            hook_edits.push(Edit::Write {
                path: script.clone(),
                contents: rc_script_text().into_bytes(),
                mode: 0o755,
            });
            hook_edits.push(Edit::Symlink {
                path: format!("{rc1}/S00{RC_SCRIPT_NAME}"),
                target: script,
            });
        }
    }
    let will_switch = switch && !switch_edits.is_empty();
    match agent {
        Some(bin) if will_switch => {
            // The agent and its hook first: a stage 1 stopped half-way
            // never leaves a switched guest without them.
            plan.edits.push(Edit::Write {
                path: AGENT.into(),
                contents: bin.to_vec(),
                mode: 0o755,
            });
            plan.edits.extend(hook_edits);
            plan.edits.extend(switch_edits);
            done.extend(switched);
            done.push("stage-2 hook installed".into());
        }
        _ if switch => plan.warnings.push(Warning::new(
            codes::STAGE2_NO_RUNLEVEL,
            "no systemd, no initdefault in /etc/inittab and no DEFAULT_RUNLEVEL in \
             /etc/init/rc-sysinit.conf: the guest is not switched to single-user mode",
        )),
        _ => {}
    }

    // SELinux.
    let selinux_config = "/etc/selinux/config";
    let selinux = files
        .read(selinux_config)
        .map_err(|e| io_error(selinux_config, e))?;
    if let Some(text) = &selinux {
        let mode = selinux_mode(text).unwrap_or_else(|| "disabled".into());
        save_once(files, &mut plan, SAVED_SELINUX, format!("{mode}\n"));
        if mode != "disabled" {
            if will_switch && mode == "enforcing" {
                plan.edits
                    .push(Edit::write(selinux_config, selinux_set(text, "permissive")));
                done.push("SELinux permissive until stage 2".into());
            } else if !will_switch {
                plan.edits.push(Edit::write("/.autorelabel", ""));
                done.push("SELinux relabel on next boot".into());
            }
        }
    }

    plan.summary = if done.is_empty() {
        if want_stage2 {
            "originals saved; guest not switched".into()
        } else {
            "originals saved; stage 2 disabled (options.stage2 = false)".into()
        }
    } else {
        format!("originals saved; {}", done.join(", "))
    };
    Ok(plan)
}

/// [`plan_with_agent`] without an agent binary (tests, `fixupctl plan`
/// from a stack that has none).
pub fn plan(ctx: &PlanCtx) -> Result<Plan, FixupError> {
    plan_with_agent(ctx, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Bootloader, FirmwareHint, GuestInfo, OsFamily};
    use crate::engine::identity::IdentityMap;
    use crate::engine::plan::MemFiles;
    use crate::protocol::config::{Inputs, validate_inputs};

    fn inputs(stage2: bool) -> Inputs {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/protocol/valid/");
        let read = |f: &str| std::fs::read(format!("{dir}{f}")).unwrap();
        let mut sys: serde_json::Value =
            serde_json::from_slice(&read("system-configuration.json")).unwrap();
        sys["options"]["stage2"] = serde_json::Value::Bool(stage2);
        let (inputs, _) = validate_inputs(
            &serde_json::to_vec(&sys).unwrap(),
            &read("replica-disk-map.json"),
            &read("network-interface-map.json"),
        )
        .unwrap();
        inputs
    }

    fn info(init: InitSystem) -> GuestInfo {
        GuestInfo {
            os_id: "rhel".into(),
            os_version: "7.9".into(),
            pretty_name: "RHEL".into(),
            family: OsFamily::Rhel,
            arch: "x86_64".into(),
            init_system: init,
            bootloader: Bootloader::Grub2,
            firmware: FirmwareHint::Bios,
            kernels: vec![],
            root: None,
        }
    }

    fn plan_for(files: &MemFiles, init: InitSystem, stage2: bool, agent: Option<&[u8]>) -> Plan {
        let inputs = inputs(stage2);
        let info = info(init);
        let identity = IdentityMap::default();
        let ctx = PlanCtx {
            files,
            info: &info,
            inputs: &inputs,
            identity: &identity,
            stack_arch: "x86_64",
            boot_device: None,
        };
        plan_with_agent(&ctx, agent).unwrap()
    }

    fn written<'a>(plan: &'a Plan, path: &str) -> Option<&'a str> {
        plan.edits.iter().find_map(|e| match e {
            Edit::Write {
                path: p, contents, ..
            } if p == path => std::str::from_utf8(contents).ok(),
            _ => None,
        })
    }

    fn link<'a>(plan: &'a Plan, path: &str) -> Option<&'a str> {
        plan.edits.iter().find_map(|e| match e {
            Edit::Symlink { path: p, target } if p == path => Some(target.as_str()),
            _ => None,
        })
    }

    const SELINUX: &str =
        "# This file controls the state of SELinux\nSELINUX=enforcing\nSELINUXTYPE=targeted\n";

    #[test]
    fn systemd_guest_switches_to_rescue_with_hook_and_permissive_selinux() {
        let files = MemFiles::new()
            .with_link(DEFAULT_TARGET, "/usr/lib/systemd/system/multi-user.target")
            .with("/usr/lib/systemd/system/rescue.target", "[Unit]\n")
            .with("/etc/selinux/config", SELINUX);
        let plan = plan_for(&files, InitSystem::Systemd, true, Some(b"\x7fELF"));
        assert_eq!(
            written(&plan, SAVED_TARGET),
            Some("/usr/lib/systemd/system/multi-user.target\n")
        );
        assert_eq!(
            link(&plan, DEFAULT_TARGET),
            Some("/usr/lib/systemd/system/rescue.target")
        );
        assert_eq!(link(&plan, UNIT_WANTS), Some(UNIT));
        assert!(
            written(&plan, UNIT)
                .unwrap()
                .contains("Before=rescue.service")
        );
        assert_eq!(written(&plan, SAVED_SELINUX), Some("enforcing\n"));
        let se = written(&plan, "/etc/selinux/config").unwrap();
        assert!(se.contains("SELINUX=permissive\n") && se.contains("SELINUXTYPE=targeted"));
        assert!(written(&plan, "/.autorelabel").is_none());
        // The agent is written before anything switches the guest.
        let agent = plan
            .edits
            .iter()
            .position(|e| e.paths() == vec![AGENT])
            .unwrap();
        let switch = plan
            .edits
            .iter()
            .position(|e| e.paths() == vec![DEFAULT_TARGET])
            .unwrap();
        assert!(agent < switch);
    }

    #[test]
    fn without_an_agent_nothing_switches_and_a_warning_says_so() {
        let files = MemFiles::new()
            .with_link(DEFAULT_TARGET, "/lib/systemd/system/graphical.target")
            .with("/etc/selinux/config", SELINUX);
        let plan = plan_for(&files, InitSystem::Systemd, true, None);
        assert!(link(&plan, DEFAULT_TARGET).is_none());
        assert!(written(&plan, UNIT).is_none());
        assert_eq!(plan.warnings[0].code, codes::STAGE2_AGENT_MISSING);
        assert!(
            written(&plan, SAVED_TARGET).is_some(),
            "originals still saved"
        );
        assert!(
            written(&plan, "/.autorelabel").is_some(),
            "new files get labels"
        );
        assert!(written(&plan, "/etc/selinux/config").is_none());
    }

    #[test]
    fn stage2_disabled_saves_originals_only() {
        let files = MemFiles::new().with("/etc/inittab", "id:3:initdefault:\n");
        let plan = plan_for(&files, InitSystem::Sysvinit, false, Some(b"x"));
        assert_eq!(written(&plan, SAVED_INITTAB), Some("id:3:initdefault:\n"));
        assert!(written(&plan, "/etc/inittab").is_none());
        assert!(plan.warnings.is_empty());
        assert!(
            plan.summary.contains("stage 2 disabled"),
            "{}",
            plan.summary
        );
    }

    #[test]
    fn sysv_guest_gets_run_level_1_and_an_rc_script() {
        let files = MemFiles::new()
            .with(
                "/etc/inittab",
                "# comment\nid:5:initdefault:\nsi::sysinit:/etc/rc.d/rc.sysinit\n",
            )
            .with("/etc/rc.d/init.d/network", "")
            .with("/etc/rc.d/rc1.d/K90network", "");
        let plan = plan_for(&files, InitSystem::Upstart, true, Some(b"x"));
        assert_eq!(
            written(&plan, "/etc/inittab"),
            Some("# comment\nid:1:initdefault:\nsi::sysinit:/etc/rc.d/rc.sysinit\n")
        );
        assert_eq!(
            link(&plan, "/etc/rc.d/rc1.d/S00osam-stage2"),
            Some("/etc/rc.d/init.d/osam-stage2")
        );
        assert!(
            plan.summary.contains("run level 5 -> 1"),
            "{}",
            plan.summary
        );
    }

    #[test]
    fn upstart_rc_sysinit() {
        let text = "start on ...\nenv DEFAULT_RUNLEVEL=2\nenv RUNLEVEL=\n";
        let (new, old) = rc_sysinit_single_user(text).unwrap();
        assert_eq!(old, "2");
        assert_eq!(new, "start on ...\nenv DEFAULT_RUNLEVEL=1\nenv RUNLEVEL=\n");
        let files = MemFiles::new().with("/etc/init/rc-sysinit.conf", text);
        let plan = plan_for(&files, InitSystem::Upstart, true, Some(b"x"));
        assert_eq!(
            link(&plan, "/etc/rc1.d/S00osam-stage2"),
            Some("/etc/init.d/osam-stage2")
        );
    }

    #[test]
    fn no_run_level_found_warns_and_does_not_switch() {
        let plan = plan_for(&MemFiles::new(), InitSystem::Sysvinit, true, Some(b"x"));
        assert_eq!(plan.warnings[0].code, codes::STAGE2_NO_RUNLEVEL);
        assert!(
            plan.edits
                .iter()
                .all(|e| !matches!(e, Edit::Symlink { .. }))
        );
        assert!(written(&plan, AGENT).is_none());
    }

    #[test]
    fn a_second_run_keeps_the_first_saved_originals() {
        let files = MemFiles::new()
            .with_link(DEFAULT_TARGET, "/usr/lib/systemd/system/rescue.target")
            .with(SAVED_TARGET, "/usr/lib/systemd/system/graphical.target\n")
            .with(SAVED_SELINUX, "enforcing\n")
            .with("/etc/selinux/config", "SELINUX=permissive\n");
        let plan = plan_for(&files, InitSystem::Systemd, true, Some(b"x"));
        assert!(written(&plan, SAVED_TARGET).is_none());
        assert!(written(&plan, SAVED_SELINUX).is_none());
    }

    #[test]
    fn line_editors_keep_other_bytes() {
        assert_eq!(inittab_single_user("x:1:foo:\n"), None);
        assert_eq!(
            inittab_single_user("#id:5:initdefault:\nid:3:initdefault:\r\n")
                .unwrap()
                .0,
            "#id:5:initdefault:\nid:1:initdefault:\r\n"
        );
        assert_eq!(
            selinux_mode("SELINUX=Enforcing\n").as_deref(),
            Some("enforcing")
        );
        assert_eq!(
            selinux_set("A=1\nSELINUX=enforcing\n", "permissive"),
            "A=1\nSELINUX=permissive\n"
        );
    }
}
