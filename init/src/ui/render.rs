//! The console screen as a pure function: a [`View`] (what the run looks
//! like at one instant) and a [`Size`] in, the screen's text with plain
//! VT100/ANSI escapes out (cursor home, SGR attributes; no terminfo).
//!
//! Every row is written in full, padded to the width, so that a frame
//! overwrites whatever the kernel printed over the previous one; nothing
//! follows the last row, so the screen never scrolls. Text is reduced to
//! printable ASCII (the VGA font's safe subset, one column a character):
//! a command's output cannot move the cursor or change colours.

use std::time::Duration;

use crate::protocol::result::StepStatus;

/// What a VGA text console is when the tty does not say.
pub const DEFAULT_SIZE: Size = Size { cols: 80, rows: 25 };

/// A screen size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub cols: usize,
    pub rows: usize,
}

/// The screen's content at one instant; durations are already computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub version: String,
    pub arch: String,
    pub migration_id: Option<String>,
    /// Where progress.txt and fixup.log are (`/tmp/fixup`), once known.
    pub dir: Option<String>,
    pub body: Body,
    /// The last warnings and errors, oldest first.
    pub notices: Vec<Notice>,
    /// How many warnings and errors there were in all.
    pub notice_count: usize,
}

/// A warning or an error line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub error: bool,
    pub text: String,
}

/// What the run is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Drivers, transport: before `/tmp/fixup` exists.
    Starting { elapsed: Duration },
    /// `/tmp/fixup` and READY are there; the manager's turn.
    Waiting(Waiting),
    /// BEGIN came: the steps run.
    Running(Running),
    /// result.json says success.
    Success(Finished),
    /// result.json (or PID 1) says failed.
    Failure(Failed),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub transport: String,
    /// Which of the three input files are there (in PROTOCOL.md's order).
    pub present: [bool; 3],
    pub waited: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// Since BEGIN.
    pub elapsed: Duration,
    /// The step running (none between steps).
    pub step: Option<StepView>,
    /// The steps finished so far.
    pub done: Vec<(String, StepStatus)>,
    /// The command running, or the last one of this step.
    pub command: Option<CommandView>,
    /// The command's last output lines, oldest first.
    pub output: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepView {
    pub n: usize,
    pub total: usize,
    pub id: String,
    /// The step's last progress message.
    pub activity: Option<String>,
    pub elapsed: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandView {
    pub line: String,
    /// Running for, or ran for.
    pub elapsed: Duration,
    /// `None` while it runs; then whether it succeeded and how it ended
    /// ("ok in 120 ms", "`dracut …` exited with status 1").
    pub outcome: Option<(bool, String)>,
}

/// One step as result.json lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepLine {
    pub id: String,
    pub status: StepStatus,
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub steps: Vec<StepLine>,
    pub duration: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub code: String,
    pub step: Option<String>,
    /// The failed step's position (n of total), where known.
    pub position: Option<(usize, usize)>,
    pub message: String,
    pub detail: Option<String>,
    /// Errors besides this one.
    pub more_errors: usize,
    pub steps: Vec<StepLine>,
    pub duration: Duration,
    /// The last command when it failed, with its last output lines.
    pub command: Option<CommandView>,
    pub output: Vec<String>,
    /// Whether result.json and END were written.
    pub written: bool,
}

/// What a step does, for its header line.
pub fn describe_step(id: &str) -> &'static str {
    match id {
        "validate" => "checking the manager's three input files",
        "storage" => "finding the replica disks and mounting the guest",
        "detect" => "detecting the guest's OS, kernels and boot loader",
        "preconditions" => "checking the guest's kernels have the target's drivers",
        "fstab" => "rewriting storage references (fstab, crypttab, LVM, md)",
        "network" => "renaming NICs and rewriting their configuration",
        "stage2" => "preparing stage 2 (single-user mode, the in-guest agent)",
        "initramfs" => "rebuilding the initramfs images",
        "bootloader" => "updating the boot loader and kernel command line",
        _ => "",
    }
}

/// The frame for `view` at `size`: the cursor hidden and homed, then every
/// row in full. Tiny or empty sizes give what fits (nothing for 0x0).
pub fn render(view: &View, size: Size) -> String {
    let rows = layout(view, size);
    let mut out = String::with_capacity(size.cols.saturating_add(12) * rows.len() + 16);
    out.push_str("\x1b[?25l\x1b[0m\x1b[H");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        let on = row.style.sgr();
        if !on.is_empty() {
            out.push_str(on);
        }
        out.push_str(&row.text);
        if !on.is_empty() {
            out.push_str("\x1b[0m");
        }
    }
    out
}

/// The screen as plain text, one line a row (tests, logs).
pub fn plain(view: &View, size: Size) -> String {
    layout(view, size)
        .into_iter()
        .map(|r| r.text)
        .collect::<Vec<_>>()
        .join("\n")
}

/// How a row is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Bold,
    /// The title and footer bars while waiting or running.
    Bar,
    OkBar,
    FailBar,
    Warn,
    Error,
}

impl Style {
    fn sgr(self) -> &'static str {
        match self {
            Style::Plain => "",
            Style::Bold => "\x1b[1m",
            Style::Bar => "\x1b[7m",
            Style::OkBar => "\x1b[1;37;42m",
            Style::FailBar => "\x1b[1;37;41m",
            Style::Warn => "\x1b[1;33m",
            Style::Error => "\x1b[1;31m",
        }
    }
}

/// One screen row: exactly `cols` characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub text: String,
    pub style: Style,
}

/// The rows of the screen: exactly `size.rows` of exactly `size.cols`
/// characters (none when either is 0).
pub fn layout(view: &View, size: Size) -> Vec<Row> {
    if size.cols == 0 || size.rows == 0 {
        return Vec::new();
    }
    let (bar, status) = match &view.body {
        Body::Starting { elapsed } => (Style::Bar, format!("STARTING {}", clock(*elapsed))),
        Body::Waiting(w) => (Style::Bar, format!("WAITING {}", clock(w.waited))),
        Body::Running(r) => (Style::Bar, format!("RUNNING {}", clock(r.elapsed))),
        Body::Success(_) => (Style::OkBar, "SUCCESS".to_string()),
        Body::Failure(_) => (Style::FailBar, "FAILED".to_string()),
    };
    let mut title = format!(" OSAM fixup stack {} ({})", view.version, view.arch);
    if let Some(id) = &view.migration_id {
        title.push_str(&format!("  migration {id}"));
    }
    let dir = view.dir.as_deref().unwrap_or("/tmp/fixup");
    let footer = match &view.body {
        Body::Starting { .. } | Body::Waiting(_) => {
            " Rescue shell: reboot and pick \"OSAM rescue shell\" in the boot menu".to_string()
        }
        Body::Running(_) => format!(" Full log: serial console, {dir}/progress.txt, fixup.log"),
        Body::Success(_) => {
            " Results complete (END written): the manager may power the VM off".to_string()
        }
        Body::Failure(f) if f.written => {
            " Results complete (END written): the manager may power the VM off".to_string()
        }
        Body::Failure(_) => " No result.json: this screen and the serial console tell".to_string(),
    };
    let cols = size.cols;
    let mut rows = vec![Row {
        text: bar_text(&title, &format!("{status} "), cols),
        style: bar,
    }];
    let body_rows = match size.rows {
        1 => 0,
        2 => 1,
        n => n - 2,
    };
    let sections = match &view.body {
        Body::Starting { elapsed } => starting(*elapsed, view, cols),
        Body::Waiting(w) => waiting(w, dir, view, cols),
        Body::Running(r) => running(r, view, cols),
        Body::Success(f) => success(f, dir, view, cols),
        Body::Failure(f) => failure(f, dir, view, cols),
    };
    let mut body = fit(sections, body_rows);
    body.resize(
        body_rows,
        Row {
            text: String::new(),
            style: Style::Plain,
        },
    );
    rows.extend(body);
    if size.rows >= 3 {
        rows.push(Row {
            text: footer,
            style: bar,
        });
    }
    for row in &mut rows {
        row.text = pad(&row.text, cols);
    }
    rows
}

/// A bar: `left` and `right` at the two ends; the left is cut first.
fn bar_text(left: &str, right: &str, cols: usize) -> String {
    let left = clean(left);
    let right = clean(right);
    let (l, r) = (left.chars().count(), right.chars().count());
    if l + 1 + r <= cols {
        format!("{left}{}{right}", " ".repeat(cols - l - r))
    } else if r + 12 <= cols {
        let keep: String = left.chars().take(cols - r - 1).collect();
        format!("{keep} {right}")
    } else {
        left
    }
}

/// A block of rows that may be shortened to fit the screen.
struct Section {
    rows: Vec<Row>,
    /// Rows it keeps whatever happens (while there is room at all).
    min: usize,
    /// Sections of a higher rank are shortened first.
    rank: u8,
    /// Leading rows kept when shortened (a heading).
    head: usize,
    /// Shortened from the top (after the heading): the newest rows stay.
    keep_tail: bool,
}

impl Section {
    fn new(rows: Vec<Row>, min: usize, rank: u8) -> Self {
        Section {
            rows,
            min,
            rank,
            head: 0,
            keep_tail: false,
        }
    }

    /// A heading and a list of which the newest entries matter.
    fn tail(rows: Vec<Row>, rank: u8) -> Self {
        Section {
            rows,
            min: 0,
            rank,
            head: 1,
            keep_tail: true,
        }
    }

    fn blank() -> Self {
        Section::new(vec![line(Style::Plain, "")], 0, 1)
    }
}

/// Fits sections into `avail` rows: the highest ranks (and, within a
/// rank, the later sections) are shortened first, down to their minimum;
/// what still does not fit is cut at the bottom.
fn fit(sections: Vec<Section>, avail: usize) -> Vec<Row> {
    let mut lens: Vec<usize> = sections.iter().map(|s| s.rows.len()).collect();
    let mut total: usize = lens.iter().sum();
    let mut ranks: Vec<u8> = sections.iter().map(|s| s.rank).collect();
    ranks.sort_unstable();
    ranks.dedup();
    for rank in ranks.into_iter().rev() {
        for (i, s) in sections.iter().enumerate().rev() {
            if total <= avail {
                break;
            }
            if s.rank != rank {
                continue;
            }
            let min = s.min.min(lens[i]);
            let cut = (lens[i] - min).min(total - avail);
            let mut len = lens[i] - cut;
            if s.keep_tail && len <= s.head && len < s.rows.len() {
                // A heading without its list says nothing.
                len = 0;
            }
            total -= lens[i] - len;
            lens[i] = len;
        }
    }
    let mut out = Vec::new();
    for (s, len) in sections.into_iter().zip(lens) {
        if len == 0 {
            continue;
        }
        let n = s.rows.len();
        if s.keep_tail && len < n {
            let head = s.head.min(len);
            let tail = len - head;
            let mut rows = s.rows.into_iter();
            out.extend(rows.by_ref().take(head));
            out.extend(rows.skip(n - head - tail));
        } else {
            out.extend(s.rows.into_iter().take(len));
        }
    }
    out.truncate(avail);
    out
}

fn line(style: Style, text: &str) -> Row {
    Row {
        text: clean(text),
        style,
    }
}

/// `text` word-wrapped to `width` columns after `indent` spaces.
fn wrapped(style: Style, indent: usize, text: &str, cols: usize) -> Vec<Row> {
    let width = cols.saturating_sub(indent).max(1);
    wrap(&clean(text), width)
        .into_iter()
        .map(|l| Row {
            text: format!("{}{l}", " ".repeat(indent)),
            style,
        })
        .collect()
}

/// Word wrap; words longer than the width are broken.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut cur = String::new();
    let mut cur_len = 0usize;
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let wlen = word.len();
            let need = if cur_len == 0 {
                wlen
            } else {
                cur_len + 1 + wlen
            };
            if need <= width {
                if cur_len > 0 {
                    cur.push(' ');
                }
                cur.extend(word.iter());
                cur_len = need;
                break;
            }
            if cur_len > 0 {
                lines.push(std::mem::take(&mut cur));
                cur_len = 0;
                continue;
            }
            // A word wider than a whole line.
            let rest = word.split_off(width);
            lines.push(word.iter().collect());
            word = rest;
            if word.is_empty() {
                break;
            }
        }
    }
    if cur_len > 0 || lines.is_empty() {
        lines.push(cur);
    }
    lines
}

/// Printable ASCII only: control characters (escapes included) become
/// spaces or `?`, common typography its ASCII look-alike.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ' '..='~' => out.push(c),
            '\t' => out.push(' '),
            '\u{2010}'..='\u{2015}' | '\u{2212}' => out.push('-'),
            '\u{2018}' | '\u{2019}' => out.push('\''),
            '\u{201c}' | '\u{201d}' => out.push('"'),
            '\u{2026}' => out.push_str("..."),
            '\u{2192}' => out.push_str("->"),
            c if c.is_control() => out.push(' '),
            _ => out.push('?'),
        }
    }
    out
}

/// Exactly `cols` characters: cut or padded with spaces.
fn pad(s: &str, cols: usize) -> String {
    let mut out: String = s.chars().take(cols).collect();
    let n = out.chars().count();
    out.extend(std::iter::repeat_n(' ', cols - n));
    out
}

/// `m:ss`, or `h:mm:ss` from an hour on.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

fn status_word(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Changed => "changed",
        StepStatus::Unchanged => "unchanged",
        StepStatus::Skipped => "skipped",
        StepStatus::Failed => "FAILED",
    }
}

/// `[#####.....]` for `done` of `total`, `width` columns in all.
fn progress_bar(done: usize, total: usize, width: usize) -> String {
    let inner = width.saturating_sub(2);
    let filled = (inner * done.min(total)).checked_div(total).unwrap_or(0);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(inner - filled))
}

fn notices(view: &View, skip: Option<&str>, rank: u8) -> Option<Section> {
    let list: Vec<&Notice> = view
        .notices
        .iter()
        .filter(|n| skip.is_none_or(|s| n.text != s))
        .collect();
    if list.is_empty() {
        return None;
    }
    let errors = list.iter().any(|n| n.error);
    let heading = if errors {
        format!(" Warnings and errors ({}):", view.notice_count)
    } else {
        format!(" Warnings ({}):", view.notice_count)
    };
    let mut rows = vec![line(Style::Bold, &heading)];
    for n in list {
        let (style, mark) = if n.error {
            (Style::Error, "x")
        } else {
            (Style::Warn, "!")
        };
        rows.push(line(style, &format!("   {mark} {}", n.text)));
    }
    Some(Section::tail(rows, rank))
}

fn steps_list(steps: &[StepLine], rank: u8) -> Section {
    let mut rows = vec![line(Style::Bold, " Steps:")];
    for (i, s) in steps.iter().enumerate() {
        let style = if s.status == StepStatus::Failed {
            Style::Error
        } else {
            Style::Plain
        };
        rows.push(line(
            style,
            &format!(
                "  {:>2} {:<13} {:<9}  {}",
                i + 1,
                s.id,
                status_word(s.status),
                s.summary
            ),
        ));
    }
    // The last steps matter most (the failed one is last).
    Section::tail(rows, rank)
}

fn output_section(heading: &str, output: &[String], rank: u8) -> Option<Section> {
    if output.is_empty() {
        return None;
    }
    let mut rows = vec![line(Style::Bold, heading)];
    rows.extend(
        output
            .iter()
            .map(|l| line(Style::Plain, &format!("   | {l}"))),
    );
    Some(Section::tail(rows, rank))
}

fn starting(elapsed: Duration, view: &View, cols: usize) -> Vec<Section> {
    let mut s = vec![
        Section::blank(),
        Section::new(
            wrapped(
                Style::Bold,
                1,
                &format!(
                    "Starting: loading drivers and setting up the transport ({})",
                    clock(elapsed)
                ),
                cols,
            ),
            1,
            0,
        ),
        Section::blank(),
    ];
    s.extend(notices(view, None, 2));
    s
}

fn waiting(w: &Waiting, dir: &str, view: &View, cols: usize) -> Vec<Section> {
    let all = w.present.iter().all(|p| *p);
    let n = w.present.iter().filter(|p| **p).count();
    let headline = if all {
        format!(
            "Ready. Waiting for BEGIN: the three input files are here ({})",
            clock(w.waited)
        )
    } else {
        format!(
            "Ready. Waiting for the manager's files: {n} of 3 here ({})",
            clock(w.waited)
        )
    };
    let mut files = vec![line(
        Style::Plain,
        &format!("   in {dir} ({}):", w.transport),
    )];
    let names = [
        crate::protocol::config::SYSTEM_CONFIGURATION,
        crate::protocol::config::REPLICA_DISK_MAP,
        crate::protocol::config::NETWORK_INTERFACE_MAP,
    ];
    for (name, present) in names.iter().zip(w.present) {
        files.push(line(
            Style::Plain,
            &format!("     [{}] {name}", if present { "x" } else { " " }),
        ));
    }
    files.push(line(Style::Plain, "     [ ] BEGIN"));
    let mut s = vec![
        Section::blank(),
        Section::new(wrapped(Style::Bold, 1, &headline, cols), 1, 0),
        Section::blank(),
        Section::new(files, 1, 3),
        Section::blank(),
        Section::new(
            wrapped(
                Style::Plain,
                1,
                "The manager writes the three JSON files, then BEGIN. Nothing on the \
                 guest's disks changes before BEGIN.",
                cols,
            ),
            0,
            4,
        ),
        Section::blank(),
    ];
    s.extend(notices(view, None, 2));
    s
}

fn running(r: &Running, view: &View, cols: usize) -> Vec<Section> {
    let mut head = Vec::new();
    match &r.step {
        Some(step) => {
            let what = describe_step(&step.id);
            let mut title = format!(" Step {} of {}: {}", step.n, step.total, step.id);
            if !what.is_empty() {
                title.push_str(&format!(" - {what}"));
            }
            let time = format!(" {} ", clock(step.elapsed));
            let room = cols.saturating_sub(time.len());
            let title = clean(&title);
            let title = if title.chars().count() <= room {
                pad(&title, room) + &time
            } else {
                title
            };
            head.push(Row {
                text: title,
                style: Style::Bold,
            });
            let bar_width = cols.saturating_sub(24).clamp(4, 42);
            head.push(line(
                Style::Plain,
                &format!(
                    " {} {} of {} steps done",
                    progress_bar(r.done.len(), step.total, bar_width),
                    r.done.len(),
                    step.total
                ),
            ));
            if let Some(a) = &step.activity {
                head.push(line(Style::Plain, &format!("   > {a}")));
            }
        }
        None => head.push(line(
            Style::Bold,
            &format!(" Between steps: {} done", r.done.len()),
        )),
    }
    let mut s = vec![Section::blank(), Section::new(head, 1, 0)];
    if let Some(c) = &r.command {
        let title = match &c.outcome {
            None => format!(" Running for {}:", clock(c.elapsed)),
            Some((true, how)) => format!(" Last command: {how}"),
            Some((false, how)) => format!(" Last command failed: {how}"),
        };
        let style = match &c.outcome {
            Some((false, _)) => Style::Error,
            _ => Style::Bold,
        };
        let mut rows = vec![line(style, &title)];
        rows.extend(wrapped(Style::Plain, 3, &c.line, cols).into_iter().take(2));
        s.push(Section::blank());
        s.push(Section::new(rows, 1, 0));
        if let Some(out) = output_section(" Output (last lines):", &r.output, 5) {
            s.push(Section::blank());
            s.push(out);
        }
    }
    if let Some(n) = notices(view, None, 3) {
        s.push(Section::blank());
        s.push(n);
    }
    s
}

fn success(f: &Finished, dir: &str, view: &View, cols: usize) -> Vec<Section> {
    let changed = f
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Changed)
        .count();
    let headline = format!(
        "Fixup complete - {} steps, {changed} changed, in {}",
        f.steps.len(),
        clock(f.duration)
    );
    let mut s = vec![
        Section::blank(),
        Section::new(wrapped(Style::Bold, 1, &headline, cols), 1, 0),
        Section::new(
            wrapped(
                Style::Plain,
                1,
                "The manager may power the VM off; the guest then boots from its own disk.",
                cols,
            ),
            1,
            0,
        ),
        Section::blank(),
        steps_list(&f.steps, 4),
    ];
    if let Some(n) = notices(view, None, 3) {
        s.push(Section::blank());
        s.push(n);
    }
    s.push(Section::blank());
    s.push(Section::new(
        wrapped(
            Style::Plain,
            1,
            &format!("Logs: {dir}/fixup.log and result.json (the manager keeps copies)"),
            cols,
        ),
        1,
        0,
    ));
    s
}

fn failure(f: &Failed, dir: &str, view: &View, cols: usize) -> Vec<Section> {
    let mut headline = "Fixup FAILED".to_string();
    match (&f.step, f.position) {
        (Some(step), Some((n, total))) => {
            headline.push_str(&format!(" in step {step} ({n} of {total})"))
        }
        (Some(step), None) => headline.push_str(&format!(" in step {step}")),
        _ => {}
    }
    if f.duration >= Duration::from_secs(1) {
        headline.push_str(&format!(" after {}", clock(f.duration)));
    }
    let mut error = vec![line(Style::Error, &format!("   {}", f.code))];
    error.extend(wrapped(Style::Plain, 3, &f.message, cols));
    let mut detail = Vec::new();
    if let Some(d) = &f.detail {
        detail.extend(wrapped(Style::Plain, 3, &format!("Detail: {d}"), cols));
    }
    if f.more_errors > 0 {
        detail.push(line(
            Style::Plain,
            &format!(
                "   ({} more error(s): result.json lists them)",
                f.more_errors
            ),
        ));
    }
    let min_error = error.len().min(4);
    let mut s = vec![
        Section::blank(),
        Section::new(wrapped(Style::Bold, 1, &headline, cols), 1, 0),
        Section::blank(),
        Section::new(error, min_error, 0),
        Section::new(detail, 1, 2),
    ];
    if let Some(c) = &f.command {
        s.push(Section::blank());
        let mut rows = vec![line(Style::Bold, " Last command:")];
        rows.extend(wrapped(Style::Plain, 3, &c.line, cols).into_iter().take(2));
        s.push(Section::new(rows, 1, 4));
        s.extend(output_section(" Its output (last lines):", &f.output, 6));
    }
    if !f.steps.is_empty() {
        s.push(Section::blank());
        s.push(steps_list(&f.steps, 5));
    }
    let main = format!("{}: {}", f.code, f.message);
    if let Some(n) = notices(view, Some(&main), 3) {
        s.push(Section::blank());
        s.push(n);
    }
    s.push(Section::blank());
    let logs = if f.written {
        format!(
            "Logs: {dir}/fixup.log and result.json (the manager keeps copies); the serial \
             console has the same lines."
        )
    } else {
        "No fixup folder: only this console and the serial console have the error.".to_string()
    };
    s.push(Section::new(wrapped(Style::Plain, 1, &logs, cols), 1, 0));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(body: Body) -> View {
        View {
            version: "0.1.0".into(),
            arch: "x86_64".into(),
            migration_id: Some("mig-7f3a".into()),
            dir: Some("/tmp/fixup".into()),
            body,
            notices: vec![Notice {
                error: false,
                text: "fstab.device_not_replicated: /data on /dev/sdb1 gets nofail".into(),
            }],
            notice_count: 1,
        }
    }

    fn running_view() -> View {
        view(Body::Running(Running {
            elapsed: Duration::from_secs(83),
            step: Some(StepView {
                n: 8,
                total: 9,
                id: "initramfs".into(),
                activity: Some("rebuilding the initramfs for 5.14.0-70.el9.x86_64".into()),
                elapsed: Duration::from_secs(42),
            }),
            done: (0..7)
                .map(|i| (format!("s{i}"), StepStatus::Changed))
                .collect(),
            command: Some(CommandView {
                line: "dracut --force --kver 5.14.0-70.el9.x86_64 /boot/initramfs-5.14.0-70.el9.x86_64.img".into(),
                elapsed: Duration::from_secs(42),
                outcome: None,
            }),
            output: (1..=20).map(|i| format!("dracut: line {i}")).collect(),
        }))
    }

    fn steps() -> Vec<StepLine> {
        [
            (
                "validate",
                StepStatus::Unchanged,
                "the three input files are valid",
            ),
            ("storage", StepStatus::Changed, "mounted /dev/sda2 (xfs)"),
            (
                "detect",
                StepStatus::Unchanged,
                "Red Hat Enterprise Linux 9.0",
            ),
            ("fstab", StepStatus::Changed, "2 entries rewritten"),
        ]
        .into_iter()
        .map(|(id, status, summary)| StepLine {
            id: id.into(),
            status,
            summary: summary.into(),
        })
        .collect()
    }

    /// The screen without the padding at the ends of the rows.
    fn trimmed(text: &str) -> String {
        text.lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn assert_shape(text: &str, size: Size) {
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines.len(), size.rows, "{text}");
        for l in &lines {
            assert_eq!(l.chars().count(), size.cols, "{l:?}");
            assert!(l.chars().all(|c| (' '..='~').contains(&c)), "{l:?}");
        }
    }

    #[test]
    fn a_running_step() {
        let v = running_view();
        let raw = plain(&v, DEFAULT_SIZE);
        assert_shape(&raw, DEFAULT_SIZE);
        let lines: Vec<&str> = raw.lines().collect();
        let text = trimmed(&raw);
        assert!(
            lines[0].starts_with(" OSAM fixup stack 0.1.0 (x86_64)  migration mig-7f3a"),
            "{text}"
        );
        assert!(lines[0].ends_with("RUNNING 1:23 "), "{text}");
        assert!(
            lines[2].starts_with(" Step 8 of 9: initramfs - rebuilding the initramfs images"),
            "{text}"
        );
        assert!(lines[2].ends_with(" 0:42 "), "{text}");
        assert!(lines[3].contains("7 of 9 steps done"), "{text}");
        assert!(text.contains("   > rebuilding the initramfs for 5.14.0-70.el9.x86_64"));
        assert!(text.contains(" Running for 0:42:\n   dracut --force --kver 5.14.0-70"));
        assert!(text.contains("initramfs-5.14.0-70.el9.x86_64.img\n\n Output (last lines):\n"));
        // The newest output lines, about eight of them, the newest last.
        let out: Vec<&&str> = lines.iter().filter(|l| l.starts_with("   | ")).collect();
        assert!((7..=12).contains(&out.len()), "{text}");
        assert!(out.last().unwrap().starts_with("   | dracut: line 20"));
        assert!(text.contains(" Warnings (1):\n   ! fstab.device_not_replicated"));
        assert!(lines[24].starts_with(" Full log: serial console, /tmp/fixup/progress.txt"));

        let ansi = render(&v, DEFAULT_SIZE);
        assert!(ansi.starts_with("\x1b[?25l\x1b[0m\x1b[H\x1b[7m OSAM fixup stack"));
        assert_eq!(ansi.matches("\r\n").count(), 24);
        assert!(!ansi.ends_with('\n'), "the last row must not scroll");
    }

    #[test]
    fn success_screen() {
        let v = view(Body::Success(Finished {
            steps: steps(),
            duration: Duration::from_secs(161),
        }));
        let raw = plain(&v, DEFAULT_SIZE);
        assert_shape(&raw, DEFAULT_SIZE);
        assert!(raw.lines().next().unwrap().ends_with("SUCCESS "));
        let text = trimmed(&raw);
        assert!(
            text.contains(
                " Fixup complete - 4 steps, 2 changed, in 2:41\n The manager may power the VM off"
            ),
            "{text}"
        );
        assert!(
            text.contains("   4 fstab         changed    2 entries rewritten"),
            "{text}"
        );
        assert!(text.contains(" Logs: /tmp/fixup/fixup.log and result.json"));
        assert!(render(&v, DEFAULT_SIZE).contains("\x1b[1;37;42m OSAM"));
    }

    fn failure_view(message: &str) -> View {
        let mut steps = steps();
        steps.truncate(1);
        steps.push(StepLine {
            id: "storage".into(),
            status: StepStatus::Failed,
            summary: message.into(),
        });
        let mut v = view(Body::Failure(Failed {
            code: "disk.not_found".into(),
            step: Some("storage".into()),
            position: Some((2, 9)),
            message: message.into(),
            detail: Some(
                "disks the stack sees: sda at 2:0:15:0; check that the replicas are attached at these addresses"
                    .into(),
            ),
            more_errors: 0,
            steps,
            duration: Duration::from_secs(31),
            command: None,
            output: Vec::new(),
            written: true,
        }));
        v.notices.push(Notice {
            error: true,
            text: format!("disk.not_found: {message}"),
        });
        v.notice_count = 2;
        v
    }

    #[test]
    fn failure_screen() {
        let v = failure_view("replica disk scsi0:0 did not appear within 30 s");
        let raw = plain(&v, DEFAULT_SIZE);
        assert_shape(&raw, DEFAULT_SIZE);
        assert!(raw.lines().next().unwrap().ends_with("FAILED "));
        let text = trimmed(&raw);
        assert!(
            text.contains(" Fixup FAILED in step storage (2 of 9) after 0:31"),
            "{text}"
        );
        assert!(
            text.contains("   disk.not_found\n   replica disk scsi0:0 did not appear within 30 s"),
            "{text}"
        );
        assert!(text.contains("   Detail: disks the stack sees: sda at 2:0:15:0; check"));
        assert!(text.contains("   2 storage       FAILED"), "{text}");
        // The error is not repeated among the warnings.
        assert_eq!(text.matches("disk.not_found").count(), 1, "{text}");
        assert!(text.contains(" Logs: /tmp/fixup/fixup.log and result.json"));
        assert!(text.lines().last().unwrap().contains("END written"));
        let ansi = render(&v, DEFAULT_SIZE);
        assert!(ansi.contains("\x1b[1;37;41m OSAM"));
        assert!(ansi.contains("\x1b[1;31m   disk.not_found"));
    }

    #[test]
    fn a_long_error_sentence_is_wrapped_and_kept_before_the_lists() {
        let long = "word ".repeat(60);
        let v = failure_view(long.trim());
        let text = plain(&v, DEFAULT_SIZE);
        assert_shape(&text, DEFAULT_SIZE);
        // 300 characters over 77 columns: four rows, all of them shown.
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("   word word"))
                .count(),
            4,
            "{text}"
        );
        assert!(text.contains("Detail:"));
    }

    #[test]
    fn long_lines_are_cut_to_the_width_and_escapes_are_neutralised() {
        let mut v = running_view();
        if let Body::Running(r) = &mut v.body {
            r.output = vec![format!("\x1b[2Jevil\x1b[31m {}", "x".repeat(300))];
            r.step.as_mut().unwrap().activity = Some("\u{2014} caf\u{e9} \t ok".into());
        }
        for size in [
            DEFAULT_SIZE,
            Size {
                cols: 132,
                rows: 43,
            },
            Size { cols: 40, rows: 12 },
        ] {
            let text = plain(&v, size);
            assert_shape(&text, size);
            let text = trimmed(&text);
            if size.rows >= 25 {
                assert!(text.contains("   |  [2Jevil [31m xxx"), "{text}");
            }
            let ansi = render(&v, size);
            assert!(!ansi.contains("\x1b[2J"));
            assert!(!ansi.contains('\t'));
        }
        assert!(trimmed(&plain(&v, DEFAULT_SIZE)).contains("   > - caf?   ok"));
    }

    #[test]
    fn tiny_and_odd_sizes_do_not_panic() {
        let views = [
            running_view(),
            failure_view("replica disk scsi0:0 did not appear within 30 s"),
            view(Body::Starting {
                elapsed: Duration::from_secs(3),
            }),
            view(Body::Waiting(Waiting {
                transport: "9p:fixup".into(),
                present: [true, false, true],
                waited: Duration::from_secs(3700),
            })),
            view(Body::Success(Finished {
                steps: Vec::new(),
                duration: Duration::ZERO,
            })),
        ];
        for v in &views {
            for cols in [0, 1, 2, 5, 13, 80, 300] {
                for rows in [0, 1, 2, 3, 4, 7, 25, 100] {
                    let size = Size { cols, rows };
                    let text = plain(v, size);
                    if cols == 0 || rows == 0 {
                        assert!(text.is_empty());
                    } else {
                        assert_shape(&text, size);
                    }
                    let _ = render(v, size);
                }
            }
        }
    }

    #[test]
    fn waiting_screens() {
        let mut w = Waiting {
            transport: "9p:fixup".into(),
            present: [false; 3],
            waited: Duration::from_secs(133),
        };
        let text = trimmed(&plain(&view(Body::Waiting(w.clone())), DEFAULT_SIZE));
        assert!(
            text.contains("Waiting for the manager's files: 0 of 3 here (2:13)"),
            "{text}"
        );
        assert!(text.contains("     [ ] replica-disk-map.json"));
        assert!(text.lines().next().unwrap().ends_with("WAITING 2:13"));
        w.present = [true; 3];
        let text = trimmed(&plain(&view(Body::Waiting(w)), DEFAULT_SIZE));
        assert!(
            text.contains("Waiting for BEGIN: the three input files are here"),
            "{text}"
        );
        assert!(text.contains("     [x] network-interface-map.json\n     [ ] BEGIN"));
    }

    #[test]
    fn helpers() {
        assert_eq!(clock(Duration::from_secs(59)), "0:59");
        assert_eq!(clock(Duration::from_secs(3723)), "1:02:03");
        assert_eq!(wrap("aa bb cc", 5), vec!["aa bb", "cc"]);
        assert_eq!(wrap("abcdefgh", 3), vec!["abc", "def", "gh"]);
        assert_eq!(wrap("", 3), vec![""]);
        assert_eq!(progress_bar(1, 4, 10), "[##......]");
        assert_eq!(progress_bar(9, 0, 1), "[]");
        assert_eq!(bar_text("left", "R ", 10), "left    R ");
    }
}
