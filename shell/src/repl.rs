//! The line-editing loop: history and tab completion on a terminal, one command per line from a
//! pipe, and `--exec` expressions.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use crate::session::{complete, open_call, printable, render_value, Output, Session, ShellError};

/// rustyline's helper: completion, no hints or highlighting.
struct Helper {
    session: Session,
    handle: tokio::runtime::Handle,
}

impl rustyline::completion::Completer for Helper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        // Describe a service the moment its methods are wanted.
        let word_start = line[..pos]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .map_or(0, |i| i + 1);
        let word = &line[word_start..pos];
        let mut wanted: Vec<String> = Vec::new();
        if let Some((service, _)) = word.split_once('.') {
            wanted.push(service.to_string());
        }
        if let Some((service, _, _)) = open_call(&line[..word_start]) {
            wanted.push(service.to_string());
        }
        for service in wanted {
            if !self.session.catalog().described.contains_key(&service) {
                let session = self.session.clone();
                let _ = self.handle.block_on(async move {
                    tokio::time::timeout(Duration::from_secs(2), session.describe(&service)).await
                });
            }
        }
        Ok(complete(line, pos, &self.session.catalog()))
    }
}

impl rustyline::hint::Hinter for Helper {
    type Hint = String;
}
impl rustyline::highlight::Highlighter for Helper {}
impl rustyline::validate::Validator for Helper {}
impl rustyline::Helper for Helper {}

/// Prints a line's outcome; `Ok(true)` means leave.
fn report(result: Result<Output, ShellError>, failed: &mut bool) -> bool {
    match result {
        Ok(Output::Exit) => return true,
        Ok(Output::Nothing) => {}
        Ok(Output::Text(t)) => println!("{}", printable(&t)),
        Ok(Output::Value(v)) => println!("{}", render_value(&v)),
        Err(e) => {
            *failed = true;
            eprintln!("error: {}", printable(&e.to_string()));
        }
    }
    let _ = std::io::stdout().flush();
    false
}

/// Runs `expressions` in order, printing each result; returns whether all succeeded.
pub async fn exec(session: &Session, expressions: &[String]) -> bool {
    let mut failed = false;
    for e in expressions {
        if report(session.eval(e).await, &mut failed) {
            break;
        }
    }
    !failed
}

/// The shell's history file: `$BASIDIA_HISTORY`, or `~/.basidia_history`.
pub fn history_path() -> Option<std::path::PathBuf> {
    std::env::var_os("BASIDIA_HISTORY")
        .map(Into::into)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".basidia_history"))
        })
}

/// Runs the shell until `exit`, Ctrl-D or the end of input. On a terminal it edits lines with
/// history and tab completion; otherwise it reads commands from standard input, one per line.
/// Returns whether every line succeeded.
pub async fn repl(session: Session, banner: String) -> bool {
    let handle = tokio::runtime::Handle::current();
    session.discover().await;
    let interactive = std::io::stdin().is_terminal();
    tokio::task::spawn_blocking(move || {
        if interactive {
            interactive_loop(session, handle, &banner)
        } else {
            script_loop(&session, &handle)
        }
    })
    .await
    .unwrap_or(false)
}

fn script_loop(session: &Session, handle: &tokio::runtime::Handle) -> bool {
    let mut failed = false;
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if report(handle.block_on(session.eval(&line)), &mut failed) {
            break;
        }
    }
    !failed
}

fn interactive_loop(session: Session, handle: tokio::runtime::Handle, banner: &str) -> bool {
    use rustyline::error::ReadlineError;

    let config = rustyline::Config::builder()
        .completion_type(rustyline::CompletionType::List)
        .auto_add_history(true)
        .max_history_size(2000)
        .map(|b| b.build())
        .unwrap_or_default();
    let mut editor: rustyline::Editor<Helper, rustyline::history::FileHistory> =
        match rustyline::Editor::with_config(config) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("error: cannot start the line editor: {e}");
                return script_loop(&session, &handle);
            }
        };
    editor.set_helper(Some(Helper {
        session: session.clone(),
        handle: handle.clone(),
    }));
    let history = history_path();
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!("{banner}");
    let mut failed = false;
    loop {
        match editor.readline(">>> ") {
            Ok(line) => {
                if report(handle.block_on(session.eval(&line)), &mut failed) {
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("error: {e}");
                break;
            }
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    // A remote error does not end an interactive shell, nor make its exit fail.
    let _ = failed;
    true
}
