//! A real browser for the pages the nodes serve: headless Chromium (Debian's `chromium`
//! package), run once per page load, answering the DOM as it stands after the page's own
//! scripts ran.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use leasehold_store::new_incarnation;

/// How long one page load may take, Chromium's start included.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Headless Chromium.
#[derive(Debug)]
pub struct Browser {
    binary: PathBuf,
}

impl Browser {
    /// Chromium on `PATH` (`chromium`), or `/usr/bin/chromium`. When there is none, says on
    /// stderr that `what` was skipped and answers `None`; under `CI=true` it fails instead.
    pub fn find(what: &str) -> Option<Browser> {
        let on_path = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .map(|dir| dir.join("chromium"));
        if let Some(binary) = on_path.chain([PathBuf::from("/usr/bin/chromium")]).find(|path| path.is_file()) {
            return Some(Browser { binary });
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium is not installed, and CI=true requires it (Debian: apt-get install chromium)"
        );
        eprintln!("skipped: chromium is not installed (Debian: apt-get install chromium), so {what} did not run");
        None
    }

    /// Loads `url` and answers the DOM, serialized, after the page's scripts ran for `budget`
    /// of virtual time (Chromium advances its clock as soon as the page is idle, so a timer
    /// of a few seconds fires without waiting for it; network loads are waited for).
    pub async fn dom(&self, url: &str, budget: Duration) -> String {
        let profile = std::env::temp_dir().join("leasehold-tests").join(new_incarnation());
        std::fs::create_dir_all(&profile).expect("creating a browser profile directory");
        let run = tokio::process::Command::new(&self.binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                &format!("--user-data-dir={}", profile.display()),
                &format!("--virtual-time-budget={}", budget.as_millis()),
                "--dump-dom",
                url,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(LOAD_TIMEOUT, run)
            .await
            .unwrap_or_else(|_| panic!("chromium did not load {url} within {LOAD_TIMEOUT:?}"))
            .expect("running chromium");
        let _ = std::fs::remove_dir_all(&profile);
        let dom = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success() && dom.contains("</html>"),
            "chromium failed on {url} ({}):\n{}\n{dom}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        dom
    }
}
