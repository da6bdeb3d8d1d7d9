//! The README's code blocks that are tagged to run against `leasehold dev`.
//!
//! A fenced block whose info string has the word `dev` after its language (` ```sh dev`) is
//! meant to be typed, in order, into a shell beside a running `leasehold dev`. A tagged block of
//! another language that names a file (` ```toml dev file=events.toml`) is a file the commands
//! after it read.

/// One tagged block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A shell command, its continuation lines joined.
    Command {
        /// The README line it starts on (1-based).
        line: usize,
        /// The command as written (several lines when it continues).
        text: String,
    },
    /// A file to write before the commands after it run.
    File {
        /// The README line its block starts on.
        line: usize,
        /// Its name, relative to the directory the commands run in.
        name: String,
        /// Its content.
        content: String,
    },
}

/// One fenced code block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The line of its opening fence (1-based).
    pub line: usize,
    /// The first word of its info string (`sh`, `toml`, `rust`), empty when it has none.
    pub language: String,
    /// The other words of its info string (`dev`, `file=events.toml`).
    pub tags: Vec<String>,
    /// Its lines, each with its line number.
    pub body: Vec<(usize, String)>,
}

impl Block {
    /// Whether it is meant to run against `leasehold dev`.
    pub fn is_dev(&self) -> bool {
        self.tags.iter().any(|tag| tag == "dev")
    }

    /// Whether it holds shell commands.
    pub fn is_shell(&self) -> bool {
        matches!(self.language.as_str(), "sh" | "shell" | "bash")
    }
}

/// Every fenced code block of `markdown`, in order.
pub fn blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines().enumerate().map(|(index, line)| (index + 1, line));
    while let Some((start, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```") else { continue };
        let mut words = info.split_whitespace().map(str::to_owned);
        let language = words.next().unwrap_or_default();
        let tags = words.collect();
        let body = lines.by_ref().take_while(|(_, line)| !line.starts_with("```"));
        let body = body.map(|(number, line)| (number, line.to_owned())).collect();
        blocks.push(Block { line: start, language, tags, body });
    }
    blocks
}

/// The steps of every block tagged `dev` in `markdown`, in order.
pub fn dev_steps(markdown: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for block in blocks(markdown).into_iter().filter(Block::is_dev) {
        let file = block.tags.iter().find_map(|tag| tag.strip_prefix("file="));
        match file {
            Some(name) => steps.push(Step::File {
                line: block.line,
                name: name.to_owned(),
                content: block.body.iter().map(|(_, line)| format!("{line}\n")).collect(),
            }),
            None if block.is_shell() => steps.extend(commands(&block.body)?),
            None => {
                let (line, language) = (block.line, &block.language);
                return Err(format!("README line {line}: a `{language} dev` block names no file= to write"));
            }
        }
    }
    Ok(steps)
}

/// The commands of a shell block: blank and comment lines skipped, a line ending in `\` or
/// inside an open quote continued on the next.
fn commands(body: &[(usize, String)]) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (number, line) in body {
        let (number, line) = (*number, line.as_str());
        let (start, text) = match pending.take() {
            None if line.trim().is_empty() || line.trim_start().starts_with('#') => continue,
            None => (number, line.to_owned()),
            Some((start, text)) => (start, format!("{text}\n{line}")),
        };
        // shlex answers None while a quote is open.
        if line.ends_with('\\') || shlex::split(&text).is_none() {
            pending = Some((start, text));
        } else {
            steps.push(Step::Command { line: start, text });
        }
    }
    match pending {
        Some((start, _)) => Err(format!("README line {start}: a command whose quote or continuation never ends")),
        None => Ok(steps),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_blocks_yield_commands_and_files_in_order() {
        let markdown = "intro\n\
            ```sh\nuntagged --skipped\n```\n\
            ```sh dev\n# a comment\nfirst --flag \\\n  continued\n\nsecond -d '{\"a\": 1,\n  \"b\": 2}' end   # note\n```\n\
            ```toml dev file=t.toml\nkey = \"v\"\n```\n\
            ```rust\nfn main() {}\n```\n";
        assert_eq!(
            dev_steps(markdown).unwrap(),
            vec![
                Step::Command { line: 7, text: "first --flag \\\n  continued".into() },
                Step::Command { line: 10, text: "second -d '{\"a\": 1,\n  \"b\": 2}' end   # note".into() },
                Step::File { line: 13, name: "t.toml".into(), content: "key = \"v\"\n".into() },
            ]
        );
    }

    #[test]
    fn an_unterminated_quote_or_a_file_block_without_a_name_is_an_error() {
        assert!(dev_steps("```sh dev\necho 'open\n```\n").unwrap_err().contains("line 2"));
        assert!(dev_steps("```toml dev\na = 1\n```\n").unwrap_err().contains("file="));
    }
}
