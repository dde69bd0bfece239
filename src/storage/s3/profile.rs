//! Credentials and settings from `~/.aws/credentials` and `~/.aws/config` (the files the AWS
//! CLI writes), for what the environment does not set: object_store reads AWS_* only.
//!
//! Profile: `AWS_PROFILE`, else `default`. Files: `AWS_SHARED_CREDENTIALS_FILE` and
//! `AWS_CONFIG_FILE`, else under `$HOME/.aws/`. Keys read: aws_access_key_id,
//! aws_secret_access_key, aws_session_token (credentials or config), region, endpoint_url
//! (config). An environment variable always wins over a file.

use std::collections::HashMap;
use std::path::PathBuf;

/// Settings found in the profile files, as (environment variable name, value) pairs.
pub fn settings(env: &dyn Fn(&str) -> Option<String>) -> Vec<(&'static str, String)> {
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let home = env("HOME").map(PathBuf::from);
    let file = |var: &str, name: &str| {
        env(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)))
    };
    let read = |p: Option<PathBuf>| p.and_then(|p| std::fs::read_to_string(p).ok());
    let creds = read(file("AWS_SHARED_CREDENTIALS_FILE", "credentials"))
        .map(|t| section(&t, &profile))
        .unwrap_or_default();
    // In the config file a profile other than `default` is `[profile NAME]`.
    let config_section = if profile == "default" {
        profile.clone()
    } else {
        format!("profile {profile}")
    };
    let config = read(file("AWS_CONFIG_FILE", "config"))
        .map(|t| section(&t, &config_section))
        .unwrap_or_default();
    let mut out = Vec::new();
    for (key, var) in [
        ("aws_access_key_id", "AWS_ACCESS_KEY_ID"),
        ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
        ("aws_session_token", "AWS_SESSION_TOKEN"),
        ("region", "AWS_REGION"),
        ("endpoint_url", "AWS_ENDPOINT_URL"),
    ] {
        if env(var).is_some() || (var == "AWS_REGION" && env("AWS_DEFAULT_REGION").is_some()) {
            continue;
        }
        if let Some(v) = creds.get(key).or_else(|| config.get(key)) {
            out.push((var, v.clone()));
        }
    }
    out
}

/// The `key = value` lines of `[name]` in INI text (comments with `#` or `;`).
fn section(text: &str, name: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(head) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = head.trim() == name;
            continue;
        }
        if inside && let Some((k, v)) = line.split_once('=') {
            out.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn profile_files_fill_what_the_environment_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let aws = dir.path().join(".aws");
        std::fs::create_dir(&aws).unwrap();
        std::fs::write(
            aws.join("credentials"),
            "[default]\naws_access_key_id = AK\naws_secret_access_key=SK\n\n[ci]\naws_access_key_id = CI\n",
        )
        .unwrap();
        std::fs::write(
            aws.join("config"),
            "# comment\n[default]\nregion = eu-west-1\n[profile ci]\nendpoint_url = http://rgw:7480\n",
        )
        .unwrap();
        let home = dir.path().display().to_string();
        let got = settings(&env_of(&[("HOME", home.clone())]));
        assert_eq!(
            got,
            vec![
                ("AWS_ACCESS_KEY_ID", "AK".into()),
                ("AWS_SECRET_ACCESS_KEY", "SK".into()),
                ("AWS_REGION", "eu-west-1".into()),
            ]
        );
        // The environment wins; another profile reads `[profile NAME]` in config.
        let got = settings(&env_of(&[
            ("HOME", home),
            ("AWS_PROFILE", "ci".into()),
            ("AWS_ACCESS_KEY_ID", "ENV".into()),
        ]));
        assert_eq!(got, vec![("AWS_ENDPOINT_URL", "http://rgw:7480".into())]);
    }

    #[test]
    fn no_files_no_settings() {
        assert!(settings(&env_of(&[("HOME", "/nonexistent".into())])).is_empty());
    }
}
