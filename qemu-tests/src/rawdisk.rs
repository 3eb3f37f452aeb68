//! Small guest disks made on the host without root, loop devices or
//! device-mapper, and read back the same way: a raw file with an MBR
//! (`sfdisk`) and one Linux partition at 1 MiB, holding an ext4 file
//! system made from a directory tree (`mkfs.ext4 -d`) and written into
//! the partition with `dd conv=notrunc`; afterwards the partition is read
//! out of the disk for `e2fsck -fn` and `debugfs`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail, ensure};

/// Where the partition starts, in MiB.
pub const PARTITION_START_MIB: u64 = 1;

/// An ext4 disk to make.
#[derive(Debug, Clone)]
pub struct Ext4Disk<'a> {
    /// The tree the file system holds (its owner becomes root's).
    pub tree: &'a Path,
    /// The whole disk's size.
    pub size_mib: u64,
    /// The file system's UUID.
    pub uuid: &'a str,
    /// Its label.
    pub label: &'a str,
}

fn run(what: &str, command: &mut Command) -> Result<Output> {
    let out = command
        .output()
        .with_context(|| format!("running {what} (scripts/install-deps.sh installs it)"))?;
    if !out.status.success() {
        bail!(
            "{what}: {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Makes `disk` (replaced): MBR, partition 1 (type 83, bootable) from
/// 1 MiB to the end, ext4 of `spec.tree` in it. `work` holds the file
/// system image meanwhile.
pub fn make_ext4_disk(spec: &Ext4Disk<'_>, disk: &Path, work: &Path) -> Result<()> {
    ensure!(
        spec.size_mib > PARTITION_START_MIB + 8,
        "a {} MiB disk is too small for an ext4 partition",
        spec.size_mib
    );
    let file =
        std::fs::File::create(disk).with_context(|| format!("creating {}", disk.display()))?;
    file.set_len(spec.size_mib << 20)?;
    drop(file);
    let mut sfdisk = Command::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(disk)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running sfdisk (fdisk: scripts/install-deps.sh)")?;
    sfdisk.stdin.take().context("sfdisk's stdin")?.write_all(
        format!(
            "label: dos\nlabel-id: 0x4f53414d\nstart={}, type=83, bootable\n",
            PARTITION_START_MIB * 2048
        )
        .as_bytes(),
    )?;
    let out = sfdisk.wait_with_output()?;
    ensure!(
        out.status.success(),
        "sfdisk {}: {}",
        disk.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let fs = work.join("partition.ext4");
    let _ = std::fs::remove_file(&fs);
    let size = format!("{}M", spec.size_mib - PARTITION_START_MIB);
    run(
        "mkfs.ext4 -d",
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-t", "ext4", "-E", "root_owner=0:0"])
            .args(["-U", spec.uuid, "-L", spec.label, "-d"])
            .arg(spec.tree)
            .arg(&fs)
            .arg(&size),
    )?;
    run(
        "dd (writing the partition)",
        Command::new("dd")
            .arg(format!("if={}", fs.display()))
            .arg(format!("of={}", disk.display()))
            .args(["bs=1M", "conv=notrunc,fsync", "status=none"])
            .arg(format!("seek={PARTITION_START_MIB}")),
    )?;
    std::fs::remove_file(&fs)?;
    Ok(())
}

/// Copies partition 1 of a disk made by [`make_ext4_disk`] to `out`.
pub fn read_partition(disk: &Path, out: &Path) -> Result<()> {
    run(
        "dd (reading the partition)",
        Command::new("dd")
            .arg(format!("if={}", disk.display()))
            .arg(format!("of={}", out.display()))
            .args(["bs=1M", "status=none"])
            .arg(format!("skip={PARTITION_START_MIB}")),
    )
    .map(drop)
}

/// `e2fsck -fn` of a file system image: Ok with its report when clean,
/// an error with the report otherwise.
pub fn e2fsck_clean(image: &Path) -> Result<String> {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(image)
        .output()
        .context("running e2fsck (e2fsprogs: scripts/install-deps.sh)")?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        out.status.success(),
        "e2fsck -fn {} found problems ({}):\n{report}",
        image.display(),
        out.status
    );
    Ok(report)
}

/// Runs one `debugfs` request (`cat /etc/fstab`, `ls -l /x`) on a file
/// system image, read-only; returns its output.
pub fn debugfs(image: &Path, request: &str) -> Result<Vec<u8>> {
    Ok(run(
        "debugfs",
        Command::new("debugfs").args(["-R", request]).arg(image),
    )?
    .stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_goes_into_the_partition_and_comes_back_out() {
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("tree");
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/fstab"), "/dev/sda1 / ext4 defaults 0 1\n").unwrap();
        let disk = d.path().join("disk.raw");
        make_ext4_disk(
            &Ext4Disk {
                tree: &tree,
                size_mib: 16,
                uuid: "0b6c2f3e-8d4a-4c1b-9e7f-2a5d6c8b1e30",
                label: "root",
            },
            &disk,
            d.path(),
        )
        .unwrap();
        assert_eq!(std::fs::metadata(&disk).unwrap().len(), 16 << 20);
        // The MBR: signature, partition 1 bootable, type 83, from sector
        // 2048 to the end.
        let mbr = std::fs::read(&disk).unwrap();
        assert_eq!(&mbr[510..512], &[0x55, 0xaa]);
        let entry = &mbr[446..462];
        assert_eq!((entry[0], entry[4]), (0x80, 0x83));
        assert_eq!(u32::from_le_bytes(entry[8..12].try_into().unwrap()), 2048);
        assert_eq!(
            u32::from_le_bytes(entry[12..16].try_into().unwrap()),
            15 * 2048
        );
        let part = d.path().join("part.ext4");
        read_partition(&disk, &part).unwrap();
        e2fsck_clean(&part).unwrap();
        assert_eq!(
            debugfs(&part, "cat /etc/fstab").unwrap(),
            b"/dev/sda1 / ext4 defaults 0 1\n"
        );
        // A damaged file system is not clean.
        let mut bytes = std::fs::read(&part).unwrap();
        bytes[1024 + 0x38] ^= 0xff; // the superblock's magic
        std::fs::write(&part, bytes).unwrap();
        assert!(e2fsck_clean(&part).is_err());
    }
}
