//! The `basidia` command line. This release knows `--version` and `--help`; the run, shell,
//! call, emit, new and show-config commands follow.

fn main() {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version" | "-V") => println!("basidia {}", env!("CARGO_PKG_VERSION")),
        None | Some("--help" | "-h") => {
            println!(
                "basidia {}\n\nUsage: basidia [--version | --help]\n\nTo run the sample services: cargo run -p basidia-example-services",
                env!("CARGO_PKG_VERSION")
            );
        }
        Some(other) => {
            eprintln!("basidia: unknown command {other:?}; see basidia --help");
            std::process::exit(2);
        }
    }
}
