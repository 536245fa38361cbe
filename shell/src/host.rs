//! The `main` of a host built with the shell: the plain host's, plus `--exec` and `--shell` in
//! the same process as the services.

use std::process::ExitCode;
use std::time::Duration;

use basidia_runtime::{HostArgs, Hosted, Registration};

use crate::session::Session;

/// Hosts the registered services like [`basidia_runtime::host_main`]; with `--exec`, evaluates
/// the expressions once they are up, prints each result and stops (exit status 1 if any failed);
/// with `--shell`, opens the shell and stops when it is left.
pub fn host_main(registrations: &[Registration]) -> ExitCode {
    let mut args = match basidia_runtime::command_line() {
        Ok(a) => a,
        Err(code) => return code,
    };
    // Expressions evaluated once and then a stop: nobody could reach a server in that time, and
    // one listening would only make the run fail where the address is taken.
    if !args.exec.is_empty() {
        args.no_http = true;
    }
    let Some(runtime) = basidia_runtime::tokio_runtime(true) else {
        return ExitCode::FAILURE;
    };
    let code = runtime.block_on(run(args, registrations));
    // Blocking tasks (a shell waiting on stdin) must not hold the process open.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

async fn run(args: HostArgs, registrations: &[Registration]) -> ExitCode {
    let hosted = match Hosted::start(&args, registrations).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("basidia: {}", basidia_runtime::error_chain(&e));
            return e.exit_code();
        }
    };
    if args.exec.is_empty() && !args.shell {
        return hosted.serve().await;
    }
    let settings = hosted.settings();
    let session = Session::new(
        hosted.broker().clone(),
        settings.serializer,
        settings.rpc_timeout,
        hosted.names(),
    );
    let ok = if args.exec.is_empty() {
        let banner = format!(
            "Basidia shell on {}, hosting {}.\nType help for the commands; Tab completes; exit or Ctrl-D leaves.",
            hosted.broker_url(),
            hosted.names().join(", ")
        );
        crate::repl::repl(session, banner).await
    } else {
        crate::repl::exec(&session, &args.exec).await
    };
    hosted.stop().await;
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
