//! The binary: banner, `ready` line, TLS CA output, JSON configuration.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Running(Child);
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str]) -> (Running, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_identity-testkit"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(out).lines() {
        let line = line.unwrap();
        let done = line == "ready";
        lines.push(line);
        if done {
            break;
        }
    }
    (Running(child), lines)
}

#[test]
fn help_documents_users_faults_and_tls() {
    let out = Command::new(env!("CARGO_BIN_EXE_identity-testkit"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "adele@contoso.onmicrosoft.com",
        "/_testkit/fault",
        "--ca-out",
        "*.b2clogin.com",
        "--auto-approve",
    ] {
        assert!(text.contains(needle), "{needle}");
    }
}

#[tokio::test]
async fn runs_with_tls_and_a_config_file() {
    let dir = std::env::temp_dir().join(format!("testkit-bin-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    let cfg = dir.join("cfg.json");
    std::fs::write(&cfg, r#"{"id_token_lifetime": 120, "mfa_scopes": []}"#).unwrap();
    let (_child, lines) = start(&[
        "--addr",
        "127.0.0.1:0",
        "--tls",
        "--ca-out",
        ca.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--auto-approve",
        "alex@contoso.onmicrosoft.com",
        "--redirect-uri",
        "https://app.example/cb",
    ]);
    assert_eq!(lines.last().unwrap(), "ready");
    let all = lines.join("\n");
    assert!(all.contains("adele@contoso.onmicrosoft.com / password"));
    let base = lines[0].rsplit(' ').next().unwrap().to_string();
    assert!(base.starts_with("https://127.0.0.1:"));
    let pem = std::fs::read(&ca).unwrap();
    let c = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = c
        .get(format!(
            "{base}/aaaabbbb-0000-cccc-1111-dddd2222eeee/oauth2/v2.0/authorize"
        ))
        .query(&[
            ("client_id", "00001111-aaaa-2222-bbbb-3333cccc4444"),
            ("response_type", "code"),
            ("redirect_uri", "https://app.example/cb"),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("https://app.example/cb?code="));
    let cfgv: serde_json::Value = c
        .get(format!("{base}/_testkit/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cfgv["id_token_lifetime"], 120);
    assert_eq!(cfgv["auto_approve"], "alex@contoso.onmicrosoft.com");
    let _ = std::fs::remove_dir_all(&dir);
}
