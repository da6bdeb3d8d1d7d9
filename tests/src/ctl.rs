//! `leasehold ctl` run as a user runs it: a process of the binary under test.

use serde_json::Value;

/// `binary ctl --endpoints ENDPOINTS --output json ARGS…`: the JSON it printed, or its exit
/// status and stderr when it failed.
pub async fn json(binary: &str, endpoints: &str, args: &[&str]) -> Result<Value, (i32, String)> {
    let stdout = run(binary, endpoints, &["--output", "json"], args).await?;
    Ok(serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("ctl {args:?} printed no JSON ({error}): {stdout}")))
}

/// `binary ctl --endpoints ENDPOINTS ARGS…` with its table output; panics when it fails.
pub async fn table(binary: &str, endpoints: &str, args: &[&str]) -> String {
    run(binary, endpoints, &[], args)
        .await
        .unwrap_or_else(|(code, stderr)| panic!("ctl {args:?} exited {code}: {stderr}"))
}

async fn run(binary: &str, endpoints: &str, options: &[&str], args: &[&str]) -> Result<String, (i32, String)> {
    let output = tokio::process::Command::new(binary)
        .args(["ctl", "--endpoints", endpoints])
        .args(options)
        .args(args)
        .output()
        .await
        .expect("running ctl");
    if !output.status.success() {
        return Err((output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned()));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
