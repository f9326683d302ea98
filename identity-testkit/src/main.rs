//! `identity-testkit`: run the local Entra-shaped identity provider from a shell.

use clap::Parser;
use identity_testkit::{TenantKind, TestKit, TestKitConfig, TlsConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

const AFTER_HELP: &str = "\
DEFAULT TENANTS, USERS AND APPS (every password is `password`)
  Workforce  aaaabbbb-0000-cccc-1111-dddd2222eeee (contoso.onmicrosoft.com)
             adele@contoso.onmicrosoft.com (Adele Vance), alex@contoso.onmicrosoft.com (Alex Wilber)
  Personal   consumers / 9188040d-6c67-4c5b-b112-36a304b66dad: megan@outlook.com (Megan Bowen)
  B2C        contosob2c.onmicrosoft.com (775527ff-9a37-4307-8b3d-cc311f58d925)
             user flows B2C_1_signupsignin1, B2C_1_profileediting1, B2C_1_passwordreset1
             bob@contoso.com (Bob B2C)
  External ID 11112222-bbbb-3333-cccc-4444dddd5555 (contosoext.onmicrosoft.com): carol@example.com
  Web app    00001111-aaaa-2222-bbbb-3333cccc4444, secret testkit-secret,
             redirect http://localhost:5000/getAToken (+ any loopback port with that path)
  Web API    22223333-cccc-4444-dddd-5555eeee6666, secret api-secret,
             scope api://22223333-cccc-4444-dddd-5555eeee6666/access_as_user, app role Data.Read.All
  Public app 33334444-dddd-5555-eeee-6666ffff7777 (device code, native apps)

AUTHORITIES
  {base}/{tenant}  with tenant = GUID, domain, common, organizations or consumers
  {base}/contosob2c.onmicrosoft.com/{user flow}   (or ?p={user flow})
  {base}/11112222-bbbb-3333-cccc-4444dddd5555     (External ID)
  Protected API: {base}/v1.0/me (Graph-shaped), {base}/api/echo (the Web API)

RUNTIME CONTROL (JSON over HTTP, not counted)
  GET  /_testkit/counters            POST /_testkit/counters/reset
  POST /_testkit/fault   {\"endpoint\":\"token\",\"fault\":{\"slow_ms\":5000}|{\"status\":503}|\"down\"|\"malformed_json\"|null}
  POST /_testkit/tamper  {\"tamper\":\"wrong_audience\"|\"expired\"|\"bad_signature\"|...|null}
  POST /_testkit/rotate-keys         POST /_testkit/clock {\"offset_secs\":3600}
  POST /_testkit/revoke {\"username\":\"...\"}   POST /_testkit/cae-event {\"username\":\"...\"}
  GET  /_testkit/config
  Endpoints: discovery, jwks, authorize, token, logout, device_code, device_auth, api, api_echo,
  userinfo, instance_discovery.

TLS
  --tls serves HTTPS with a CA generated at start (or kept in --ca-dir). The server certificate
  names localhost, 127.0.0.1, login.microsoftonline.com, login.windows.net, graph.microsoft.com,
  *.b2clogin.com and *.ciamlogin.com. Write the CA with --ca-out and trust it with
  SSL_CERT_FILE or reqwest's add_root_certificate; map the host names to the listen address
  (/etc/hosts or reqwest's resolve) to exercise host-based authority detection.

Scripts can wait for a line that says exactly `ready`.";

/// A local OpenID Connect provider shaped like Microsoft Entra ID, Entra External ID
/// and Azure AD B2C, for tests, demos and offline development.
#[derive(Parser, Debug)]
#[command(name = "identity-testkit", version, after_help = AFTER_HELP)]
struct Args {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8080", env = "TESTKIT_ADDR")]
    addr: SocketAddr,
    /// JSON configuration (tenants, users, apps, lifetimes; any member may be left out).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Headless mode: sign this user in without pages (login_hint may pick another user).
    #[arg(long)]
    auto_approve: Option<String>,
    /// Serve HTTPS with the testkit's own CA.
    #[arg(long)]
    tls: bool,
    /// Write the CA certificate (PEM) to this file (implies --tls).
    #[arg(long)]
    ca_out: Option<PathBuf>,
    /// Keep the CA in this directory (ca.pem, ca.key) and reuse it across runs (implies --tls).
    #[arg(long)]
    ca_dir: Option<PathBuf>,
    /// ID token lifetime in seconds.
    #[arg(long)]
    id_token_lifetime: Option<u64>,
    /// Access token lifetime in seconds.
    #[arg(long)]
    access_token_lifetime: Option<u64>,
    /// Extra redirect URI for the default web app (repeatable).
    #[arg(long)]
    redirect_uri: Vec<String>,
    /// Client id of the default web app.
    #[arg(long)]
    client_id: Option<String>,
    /// Client secret of the default web app.
    #[arg(long)]
    client_secret: Option<String>,
}

fn load_config(args: &Args) -> Result<TestKitConfig, String> {
    let mut cfg = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            serde_json::from_str::<TestKitConfig>(&text)
                .map_err(|e| format!("invalid configuration {}: {e}", p.display()))?
        }
        None => TestKitConfig::default(),
    };
    cfg.addr = args.addr;
    if let Some(u) = &args.auto_approve {
        cfg.auto_approve = Some(u.clone());
    }
    if args.tls || args.ca_out.is_some() || args.ca_dir.is_some() {
        let mut t = cfg.tls.take().unwrap_or_else(TlsConfig::default);
        if args.ca_dir.is_some() {
            t.ca_dir = args.ca_dir.clone();
        }
        cfg.tls = Some(t);
    }
    if let Some(s) = args.id_token_lifetime {
        cfg.id_token_lifetime = Duration::from_secs(s);
    }
    if let Some(s) = args.access_token_lifetime {
        cfg.access_token_lifetime = Duration::from_secs(s);
    }
    if let Some(app) = cfg.apps.first_mut() {
        if let Some(id) = &args.client_id {
            app.client_id = id.clone();
        }
        if let Some(s) = &args.client_secret {
            app.client_secret = Some(s.clone());
        }
        app.redirect_uris.extend(args.redirect_uri.iter().cloned());
    }
    Ok(cfg)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("identity_testkit=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let cfg = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("identity-testkit: {e}");
            std::process::exit(2);
        }
    };
    let kit = match TestKit::start(cfg).await {
        Ok(k) => k,
        Err(e) => {
            eprintln!("identity-testkit: {e}");
            std::process::exit(1);
        }
    };
    if let (Some(path), Some(pem)) = (&args.ca_out, kit.ca_pem()) {
        if let Err(e) = std::fs::write(path, pem) {
            eprintln!("identity-testkit: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
    }
    print_banner(&kit, args.ca_out.as_deref());
    if tokio::signal::ctrl_c().await.is_ok() {
        tracing::info!("shutting down");
    }
    kit.shutdown().await;
}

fn print_banner(kit: &TestKit, ca_out: Option<&std::path::Path>) {
    let base = kit.base_url();
    let cfg = kit.config();
    println!("identity-testkit listening on {base}");
    if let Some(p) = ca_out {
        println!("CA certificate written to {}", p.display());
    }
    println!("Authorities:");
    for t in &cfg.tenants {
        match t.kind {
            TenantKind::Workforce => println!("  workforce    {base}/{}  ({})", t.id, t.domain),
            TenantKind::Consumers => println!("  personal     {base}/consumers"),
            TenantKind::ExternalId => println!("  external id  {base}/{}  ({})", t.id, t.domain),
            TenantKind::B2c => {
                for p in &t.policies {
                    println!("  b2c          {base}/{}/{p}", t.domain);
                }
            }
        }
    }
    println!("  multi-tenant {base}/common, {base}/organizations");
    println!("  API          {}", kit.api_url());
    if let Some(app) = cfg.apps.first() {
        println!(
            "Default app: client id {}, secret {}, redirect URIs {}",
            app.client_id,
            app.client_secret.as_deref().unwrap_or("(none)"),
            app.redirect_uris.join(", ")
        );
    }
    println!("Users:");
    for u in &cfg.users {
        println!(
            "  {} / {}  ({}, tenant {})",
            u.username, u.password, u.display_name, u.tenant_id
        );
    }
    if let Some(a) = &cfg.auto_approve {
        println!("Auto-approve: signing in {a} without pages");
    }
    println!("ready");
}
