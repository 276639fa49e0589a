//! The `keygate` command line. Each subcommand loads the config, builds what it needs from
//! the library and reports in plain words; a failure exits non-zero with the reason.
#![forbid(unsafe_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use keygate::service::{audit_log, invitations, Actor};
use keygate::state::SystemClock;
use keygate::{build, BuildOptions, Config};

/// mimalloc: the request path allocates many small, short-lived buffers (JSON, headers,
/// SQL binds) across threads; it spends less CPU on them than glibc's allocator
/// (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "keygate",
    version,
    about = "Enterprise SSO attestation gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run on the embedded default: SQLite file, in-process store, 127.0.0.1, RP ID localhost.
    Dev {
        /// Where the SQLite database lives.
        #[arg(long, default_value = ".keygate-dev")]
        data_dir: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: String,
        /// Optional config file layered over the dev defaults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run for production with a config file (PostgreSQL + Redis).
    Serve {
        #[arg(long, env = "KEYGATE_CONFIG")]
        config: PathBuf,
    },
    /// Apply pending database migrations.
    Migrate {
        #[arg(long, env = "KEYGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Create an invitation link for a member and print it.
    Invite {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long, default_value = "member")]
        role: String,
        #[arg(long, env = "KEYGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Audit-log commands.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// OpenID Connect signing-key commands.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Exports: the signed compliance attestation, the public JWKS that verifies it, and the
    /// managed configuration that pins a vendor's tool to a workspace.
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
    /// Verify a signed compliance report offline (no database): the signature against the
    /// JWKS, the report's integrity and, with --evidence, every key's attestation.
    VerifyExport {
        /// The signed report (compact JWS).
        file: PathBuf,
        /// The gateway's public JWKS (`keygate export jwks`).
        #[arg(long)]
        jwks: PathBuf,
        /// The evidence bundle exported with the report.
        #[arg(long)]
        evidence: Option<PathBuf>,
        /// Extra trust anchors: a directory of PEM files (or one file), added to the
        /// built-in Yubico roots.
        #[arg(long)]
        roots: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ExportCommand {
    /// The compliance attestation of every member (or one workspace's).
    Compliance {
        /// A workspace's ID or external ID; the whole organisation when absent.
        #[arg(long)]
        workspace: Option<String>,
        /// jws (signed), json, csv or html.
        #[arg(long, default_value = "jws")]
        format: String,
        /// Write the evidence bundle (each key's raw attestation) here.
        #[arg(long)]
        evidence: Option<PathBuf>,
        /// Days the report looks back: a phishing-resistant sign-in is needed within them.
        #[arg(long, default_value_t = keygate::service::compliance::DEFAULT_PERIOD_DAYS)]
        period_days: u32,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, env = "KEYGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// The public JWKS that verifies signed reports (and tokens).
    Jwks {
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, env = "KEYGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// The managed configuration that pins a vendor's tool to a workspace: Codex's
    /// `requirements.toml` (ChatGPT sign-in, this workspace only), for device management.
    ManagedConfig {
        /// The workspace's ID or external ID.
        #[arg(long)]
        workspace: String,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, env = "KEYGATE_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn write_out(out: Option<&PathBuf>, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    match out {
        Some(path) => {
            std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
        }
        None => std::io::stdout()
            .lock()
            .write_all(bytes)
            .map_err(|e| format!("cannot write to standard output: {e}")),
    }
}

async fn export(command: ExportCommand) -> Result<(), String> {
    use keygate::service::compliance;
    match command {
        ExportCommand::Compliance {
            workspace,
            format,
            evidence,
            period_days,
            out,
            config,
        } => {
            let format: compliance::Format = format
                .parse()
                .map_err(|e: keygate::error::Error| e.to_string())?;
            let app = existing(config.as_ref()).await?;
            let request = compliance::ExportRequest {
                workspace,
                format,
                period_days,
                evidence: evidence.is_some(),
            };
            let done = compliance::export(&app.state, &Actor::cli(), &request)
                .await
                .map_err(|e| e.to_string())?;
            if let Some(path) = &evidence {
                write_out(Some(path), &done.evidence)?;
            }
            write_out(out.as_ref(), &done.body)?;
            let s = &done.report.summary;
            eprintln!(
                "exported the compliance report ({format}): {} member(s), {} compliant{}{}",
                s.members,
                s.compliant,
                done.kid
                    .map(|k| format!(", signed with key {k}"))
                    .unwrap_or_default(),
                evidence
                    .map(|p| format!("; evidence in {}", p.display()))
                    .unwrap_or_default()
            );
            Ok(())
        }
        ExportCommand::Jwks { out, config } => {
            let app = existing(config.as_ref()).await?;
            let jwks = compliance::jwks(&app.state)
                .await
                .map_err(|e| e.to_string())?;
            let mut bytes = serde_json::to_vec_pretty(&jwks).map_err(|e| e.to_string())?;
            bytes.push(b'\n');
            write_out(out.as_ref(), &bytes)
        }
        ExportCommand::ManagedConfig {
            workspace,
            out,
            config,
        } => {
            let app = existing(config.as_ref()).await?;
            let done = keygate::service::managed_config::codex_requirements(
                &app.state,
                &Actor::cli(),
                &workspace,
            )
            .await
            .map_err(|e| match e {
                keygate::error::Error::NotFound => format!(
                    "there is no workspace with ID {:?}",
                    workspace.chars().take(64).collect::<String>()
                ),
                other => other.to_string(),
            })?;
            write_out(out.as_ref(), done.file.body.as_bytes())?;
            eprintln!(
                "exported Codex's {} for workspace {} (ChatGPT workspace {}){}",
                done.file.filename,
                done.workspace.id,
                done.workspace.external_id,
                out.map(|p| format!(" to {}", p.display()))
                    .unwrap_or_default()
            );
            Ok(())
        }
    }
}

fn verify_export(
    file: &std::path::Path,
    jwks: &std::path::Path,
    evidence: Option<&std::path::Path>,
    roots: Option<&std::path::Path>,
) -> Result<(), String> {
    use keygate::compliance;
    let report = compliance::read_input(file, "report").map_err(|e| e.to_string())?;
    let report = String::from_utf8(report)
        .map_err(|_| format!("the report {} is not text (a compact JWS)", file.display()))?;
    let jwks = compliance::read_input(jwks, "JWKS").map_err(|e| e.to_string())?;
    let evidence = evidence
        .map(|p| compliance::read_input(p, "evidence bundle"))
        .transpose()
        .map_err(|e| e.to_string())?;
    let verifier = compliance::verifier_with_roots(roots).map_err(|e| e.to_string())?;
    let outcome = compliance::verify_export(&report, &jwks, evidence.as_deref(), &verifier)
        .map_err(|e| format!("verification FAILED: {e}"))?;
    print!("{}", outcome.text());
    let problems = outcome.all_problems();
    match problems.first() {
        None => Ok(()),
        Some(first) => Err(format!(
            "verification FAILED ({} problem(s)); first: {first}",
            problems.len()
        )),
    }
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Replace the signing keys; the old ones keep verifying for the overlap. Running
    /// replicas pick the new keys up within `oidc.key_reload_secs`.
    Rotate {
        /// Seconds the old keys keep verifying (default and minimum: the longest token
        /// lifetime plus a minute of leeway).
        #[arg(long)]
        overlap_secs: Option<u64>,
        #[arg(long, env = "KEYGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// One step of a SAML signing-key rotation: the first run publishes the next
    /// certificate in the metadata (it does not sign yet); the next run makes it the
    /// signing key. SPs re-read the metadata in between.
    RotateSaml {
        #[arg(long, env = "KEYGATE_CONFIG")]
        config: Option<PathBuf>,
    },
}

async fn keys(command: KeysCommand) -> Result<(), String> {
    match command {
        KeysCommand::Rotate {
            overlap_secs,
            config,
        } => {
            let app = existing(config.as_ref()).await?;
            let overlap =
                overlap_secs.map(|s| time::Duration::seconds(s.min(i64::MAX as u64) as i64));
            let rotated = keygate::service::oidc::keys::rotate(&app.state, &Actor::cli(), overlap)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "new signing keys: {}; the old keys verify until {}{}",
                rotated.new_kids.join(", "),
                keygate::http::views::format_time(rotated.retired_until.unix_timestamp()),
                if rotated.pruned > 0 {
                    format!(" ({} expired keys dropped)", rotated.pruned)
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        KeysCommand::RotateSaml { config } => {
            use keygate::service::saml::keys::Rotation;
            let app = existing(config.as_ref()).await?;
            match keygate::service::saml::keys::rotate(&app.state, &Actor::cli())
                .await
                .map_err(|e| e.to_string())?
            {
                Rotation::Staged { fingerprint } => println!(
                    "next SAML signing certificate published in the metadata (SHA-256 {fingerprint}); \
                     run this again once the service providers have it"
                ),
                Rotation::Promoted { fingerprint } => {
                    println!("SAML responses are now signed with the key of certificate SHA-256 {fingerprint}")
                }
            }
            Ok(())
        }
    }
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain (or, with --file, an export on its own); report the first
    /// broken link.
    Verify {
        #[arg(long, env = "KEYGATE_CONFIG")]
        config: Option<PathBuf>,
        /// A JSON-lines export to verify without the database.
        #[arg(long)]
        file: Option<PathBuf>,
        /// With --file: the gateway's public JWKS (`keygate export jwks`), to check the
        /// anchor's signature as well.
        #[arg(long, requires = "file")]
        jwks: Option<PathBuf>,
    },
    /// Export a range of the chain as JSON lines, anchored so it verifies on its own.
    Export {
        /// First seq to export (default 1).
        #[arg(long)]
        from_seq: Option<i64>,
        /// Last seq to export (default: the last event now).
        #[arg(long)]
        to_seq: Option<i64>,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, env = "KEYGATE_CONFIG")]
        config: Option<PathBuf>,
    },
}

async fn audit(command: AuditCommand) -> Result<(), String> {
    match command {
        AuditCommand::Verify {
            file: Some(file),
            jwks,
            ..
        } => {
            let jwks = match &jwks {
                Some(path) => Some(
                    std::fs::read(path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
                ),
                None => None,
            };
            let report =
                audit_log::verify_export_file(&file, jwks.as_deref()).map_err(|e| e.to_string())?;
            println!("{report}");
            Ok(())
        }
        AuditCommand::Verify {
            config, file: None, ..
        } => {
            // The database alone: assembling the app writes (config sync), and a chain
            // blocked past its head must still be verifiable.
            let config = load(config.as_ref())?;
            let url = secrecy::ExposeSecret::expose_secret(&config.database.url).to_string();
            let storage = tokio::task::spawn_blocking(move || {
                keygate::storage::Storage::connect(&url, Some(1))
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("database: {e}"))?;
            let report = audit_log::verify_in(&storage)
                .await
                .map_err(|e| e.to_string())?;
            println!("{report}");
            Ok(())
        }
        AuditCommand::Export {
            from_seq,
            to_seq,
            out,
            config,
        } => {
            let app = existing(config.as_ref()).await?;
            let (from, to) = (
                from_seq.map(|n| n.to_string()),
                to_seq.map(|n| n.to_string()),
            );
            let export =
                audit_log::start_export(&app.state, &Actor::cli(), from.as_deref(), to.as_deref())
                    .await
                    .map_err(|e| e.to_string())?;
            let written = match &out {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                    let mut w = std::io::BufWriter::new(file);
                    export.write_to(&app.state, &mut w).await
                }
                None => {
                    let mut w = std::io::BufWriter::new(std::io::stdout().lock());
                    export.write_to(&app.state, &mut w).await
                }
            }
            .map_err(|e| e.to_string())?;
            eprintln!(
                "exported {written} audit events (seq {}..{}){}",
                export.header.from_seq,
                export.header.to_seq,
                out.map(|p| format!(" to {}", p.display()))
                    .unwrap_or_default()
            );
            Ok(())
        }
    }
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file (and KEYGATE__ variables) and print the effective config.
    Check {
        #[arg(long, env = "KEYGATE_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn load(config: Option<&PathBuf>) -> Result<Config, String> {
    Config::load(config.map(|p| p.as_path()), std::env::vars()).map_err(|e| e.to_string())
}

/// Starts logging to stderr: JSON lines when `KEYGATE_LOG_FORMAT` says `json`, text when it
/// says `text`, else `json_by_default` (`serve`: JSON; `dev`: text). Colour only when
/// stderr is a terminal. The filter is `KEYGATE_LOG` (default `info`).
fn init_logs(json_by_default: bool) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let asked = std::env::var("KEYGATE_LOG_FORMAT").ok();
    let json = log_format_is_json(asked.as_deref(), json_by_default);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.compact().init();
    }
    if let Some(other) = asked.filter(|a| !matches!(a.trim(), "json" | "text" | "")) {
        tracing::warn!("KEYGATE_LOG_FORMAT={other:?} is neither json nor text; ignored");
    }
}

/// Whether logs are JSON: `KEYGATE_LOG_FORMAT` (`json` or `text`), else the command's default.
fn log_format_is_json(asked: Option<&str>, json_by_default: bool) -> bool {
    match asked.map(str::trim) {
        Some("json") => true,
        Some("text") => false,
        _ => json_by_default,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("keygate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("keygate: {msg}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Dev {
            data_dir,
            bind,
            config,
        } => {
            init_logs(false);
            std::fs::create_dir_all(&data_dir)
                .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
            let port = bind.rsplit(':').next().unwrap_or("8080").to_string();
            let mut env: Vec<(String, String)> = vec![
                ("KEYGATE__SERVER__BIND".into(), bind.clone()),
                (
                    "KEYGATE__SERVER__PUBLIC_URL".into(),
                    format!("http://localhost:{port}"),
                ),
                ("KEYGATE__WEBAUTHN__RP_ID".into(), "localhost".into()),
                (
                    "KEYGATE__DATABASE__URL".into(),
                    format!("sqlite://{}/keygate.db", data_dir.display()),
                ),
                ("KEYGATE__EPHEMERAL__URL".into(), "memory://".into()),
            ];
            env.extend(std::env::vars());
            let config = Config::load(config.as_deref(), env).map_err(|e| e.to_string())?;
            serve(config, true).await
        }
        Command::Serve { config } => {
            init_logs(true);
            serve(load(Some(&config))?, false).await
        }
        Command::Migrate { config } => {
            let config = load(config.as_ref())?;
            let app = build(
                config,
                Arc::new(SystemClock),
                BuildOptions {
                    migrate: true,
                    bootstrap: false,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            let _ = app;
            println!("migrations applied");
            Ok(())
        }
        Command::Invite {
            email,
            name,
            role,
            config,
        } => {
            let app = existing(config.as_ref()).await?;
            let issued = invitations::create(&app.state, &Actor::cli(), &email, &name, &role)
                .await
                .map_err(|e| e.to_string())?;
            println!("{}", issued.link);
            Ok(())
        }
        Command::Audit { command } => audit(command).await,
        Command::Keys { command } => keys(command).await,
        Command::Export { command } => export(command).await,
        Command::VerifyExport {
            file,
            jwks,
            evidence,
            roots,
        } => verify_export(&file, &jwks, evidence.as_deref(), roots.as_deref()),
        Command::Config {
            command: ConfigCommand::Check { config },
        } => {
            let config = load(config.as_ref())?;
            print!("{}", config.to_redacted_toml());
            eprintln!("config OK");
            Ok(())
        }
    }
}

/// keygate on an existing, migrated database, for one-shot commands.
async fn existing(config: Option<&PathBuf>) -> Result<keygate::App, String> {
    build(
        load(config)?,
        Arc::new(SystemClock),
        BuildOptions {
            migrate: false,
            bootstrap: false,
        },
    )
    .await
    .map_err(|e| e.to_string())
}

async fn serve(config: Config, dev: bool) -> Result<(), String> {
    let bind = config.server.bind.clone();
    let app = build(
        config,
        Arc::new(SystemClock),
        BuildOptions {
            migrate: dev,
            bootstrap: true,
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let listener = TcpListener::bind(&bind).map_err(|e| format!("cannot listen on {bind}: {e}"))?;
    if let Some(b) = &app.bootstrap {
        println!("\nNo admin yet. Open this one-time link to enrol the first admin's key (valid until {}):\n\n    {}\n", keygate::http::views::format_time(b.expires_at), b.link);
    }
    println!(
        "keygate listening on http://{bind} (public URL {})",
        app.state.config.server.public_url
    );
    let server = keygate::start(&app.state, listener).map_err(|e| e.to_string())?;
    server.await.map_err(|e| e.to_string())
}
