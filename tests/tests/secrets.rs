//! The store password never leaks: starts that fail in every way a store URL or password
//! file can fail, `--print-config`, and a start with `--store-password-file` against the
//! real PostgreSQL, with everything each process wrote searched for any piece of the
//! password, as written and percent-encoded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use leasehold_store::new_incarnation;
use leasehold_tests::store::Kind;
use leasehold_tests::{Node, TestCluster, TestStore, phase, serial};

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-node");

/// Every character that means something in a URL (`/ ? # @ : % & = +`), a space and
/// non-ASCII, between pieces distinctive enough that finding one in the output is a leak.
const PASSWORD: &str = "Zq1/Kx7?Wv3#Jm5@Yp9:Hb2%Rt4&Lc6=Nf8+Gd0 Ué€";

/// The same, without the characters that end a URL's authority, so that a URL holding it
/// unencoded fails in the parser itself (at the port) rather than at the host.
const PASSWORD_WITHOUT_DELIMITERS: &str = "Zq1:Kx7@Wv3%Jm5&Yp9=Hb2+Rt4 Ué€";

/// A loopback port nothing listens on.
const CLOSED: &str = "127.0.0.1:1";

/// `text` with every byte but letters and digits percent-encoded, as a careful user writes a
/// password into a URL.
fn encoded(text: &str) -> String {
    text.bytes()
        .map(|byte| if byte.is_ascii_alphanumeric() { char::from(byte).to_string() } else { format!("%{byte:02X}") })
        .collect()
}

/// The pieces of `password` between its special characters: any of them in the output,
/// whatever the encoding around it, is a leak.
fn pieces(password: &str) -> Vec<&str> {
    password.split(|c: char| c.is_ascii_punctuation() || c == ' ').filter(|piece| !piece.is_empty()).collect()
}

fn assert_no_leak(what: &str, output: &str) {
    for password in [PASSWORD, PASSWORD_WITHOUT_DELIMITERS] {
        for form in [password.to_owned(), encoded(password)] {
            assert!(!output.contains(&form), "{what}: the password appears in:\n{output}");
        }
        for piece in pieces(password) {
            assert!(!output.contains(piece), "{what}: {piece:?} of the password appears in:\n{output}");
        }
    }
}

/// A file holding `contents`, in a directory of the test's own.
struct PasswordFile {
    dir: PathBuf,
    path: PathBuf,
}

impl PasswordFile {
    fn new(contents: &str) -> PasswordFile {
        let dir = std::env::temp_dir().join("leasehold-tests").join(new_incarnation());
        std::fs::create_dir_all(&dir).expect("creating the test directory");
        let path = dir.join("store-password");
        std::fs::write(&path, contents).expect("writing the password file");
        PasswordFile { dir, path }
    }

    fn missing() -> PasswordFile {
        let file = PasswordFile::new("");
        std::fs::remove_file(&file.path).expect("removing the password file");
        file
    }

    fn arg(&self) -> String {
        self.path.display().to_string()
    }
}

impl Drop for PasswordFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `url` (a server URL from the environment) with `user` and, if given, `password` in place
/// of its own login.
fn with_login(url: &str, user: &str, password: Option<&str>) -> String {
    let (scheme, rest) = url.split_once("://").expect("a server URL");
    let host_start = rest.rfind('@').map_or(0, |at| at + 1);
    let password = password.map(|password| format!(":{password}")).unwrap_or_default();
    format!("{scheme}://{user}{password}@{}", &rest[host_start..])
}

/// The user of a server URL from the environment.
fn user_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.rfind('@').map_or("", |at| rest[..at].split(':').next().unwrap_or_default())
}

/// Runs `leasehold coordinator` with `args`, expects it to fail with `expected` in its output,
/// runs it again with `--print-config`, and checks that neither wrote the password.
async fn fails_without_leaking(args: &[&str], expected: &str) -> String {
    let mut all = vec!["--log-format", "json", "coordinator", "--listen", "127.0.0.1:0", "--metrics-listen", ""];
    all.extend_from_slice(args);
    let start: Vec<String> = all.iter().map(|arg| arg.to_string()).collect();
    let mut node = Node::spawn(BIN, "secrets", &start, &[]);
    let status = node.wait_exit(Duration::from_secs(20)).await.expect("a failing start exits");
    let output = node.output();
    assert!(!status.success(), "{args:?} started:\n{output}");
    assert!(output.contains(expected), "{args:?}: expected {expected:?} in:\n{output}");
    assert_eq!(output.lines().filter(|line| line.starts_with("error:")).count(), 1, "{output}");
    assert_no_leak(&format!("{args:?}"), &output);

    let mut print: Vec<String> = start.clone();
    print.push("--print-config".to_owned());
    let mut printer = Node::spawn(BIN, "secrets-print", &print, &[]);
    printer.wait_exit(Duration::from_secs(20)).await.expect("--print-config exits");
    let printed = printer.output();
    assert_no_leak(&format!("--print-config {args:?}"), &printed);
    printed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_starts_never_show_the_store_password() {
    let _serial = serial().await;

    phase("a password with reserved characters, unencoded: refused, with the URL shown up to its last @ hidden");
    let url = format!("postgres://leasehold:{PASSWORD}@{CLOSED}/leasehold");
    let printed = fails_without_leaking(&["--store", &url], "store.url: postgres://***@127.0.0.1:1/leasehold").await;
    assert!(printed.contains("url = \"postgres://***@127.0.0.1:1/leasehold\""), "{printed}");

    phase("a URL the parser itself refuses (a bad port): the error names the URL without the password");
    let url = format!("postgres://leasehold:{PASSWORD_WITHOUT_DELIMITERS}@127.0.0.1:notaport/leasehold");
    let printed = fails_without_leaking(&["--store", &url], "invalid port number").await;
    assert!(printed.contains("url = \"postgres://***@127.0.0.1:notaport/leasehold\""), "{printed}");

    phase("well-encoded passwords to closed ports: the connect errors show the user, never the password");
    let password = encoded(PASSWORD);
    for (scheme, backend) in [("postgres", "postgres"), ("mysql", "mysql"), ("mariadb", "mysql")] {
        let url = format!("{scheme}://leasehold:{password}@{CLOSED}/leasehold");
        let printed = fails_without_leaking(&["--store", &url], &format!("cannot reach the {backend} store")).await;
        assert!(printed.contains(&format!("url = \"{scheme}://leasehold:***@127.0.0.1:1/leasehold\"")), "{printed}");
    }

    phase("a secret-looking parameter the driver does not take is refused (it would be logged)");
    let url = format!("postgres://leasehold@{CLOSED}/leasehold?sslpassword={password}");
    let printed = fails_without_leaking(&["--store", &url], "the `sslpassword` parameter").await;
    assert!(printed.contains("sslpassword=***"), "{printed}");

    phase("a password file: missing, beside a password in the URL, for SQLite, and to a closed port");
    let missing = PasswordFile::missing();
    let url = format!("postgres://leasehold@{CLOSED}/leasehold");
    let printed =
        fails_without_leaking(&["--store", &url, "--store-password-file", &missing.arg()], &missing.arg()).await;
    assert!(printed.contains(&format!("password-file = \"{}\"", missing.arg())), "{printed}");

    let file = PasswordFile::new(&format!("{PASSWORD}\n"));
    let twice = format!("postgres://leasehold:{password}@{CLOSED}/leasehold");
    fails_without_leaking(
        &["--store", &twice, "--store-password-file", &file.arg()],
        "remove the password from store.url",
    )
    .await;
    let sqlite = format!("sqlite://{}/leasehold.db", file.dir.display());
    fails_without_leaking(&["--store", &sqlite, "--store-password-file", &file.arg()], "SQLite takes no password")
        .await;
    let printed = fails_without_leaking(
        &["--store", &url, "--store-password-file", &file.arg()],
        "cannot reach the postgres store at postgres://leasehold@127.0.0.1:1/leasehold",
    )
    .await;
    assert!(printed.contains(&format!("password-file = \"{}\"", file.arg())), "{printed}");
}

/// A real server refuses the login (PostgreSQL: a role that does not exist, whatever the
/// password; MariaDB: a password for a user that has none): the server's answer is shown,
/// the password is not, whether it came in the URL or from a file.
async fn a_refused_login_never_shows_the_password(kind: Kind) {
    let _serial = serial().await;
    let Some(store) = TestStore::of(kind) else { return };
    let (user, backend) = match kind {
        Kind::Postgres => ("leasehold_no_such_role", "postgres"),
        _ => ("root", "mysql"),
    };
    let expected = format!("cannot reach the {backend} store");

    phase("the password percent-encoded in the URL");
    let url = with_login(&store.url, user, Some(&encoded(PASSWORD)));
    fails_without_leaking(&["--store", &url], &expected).await;

    phase("the password from a file");
    let file = PasswordFile::new(PASSWORD);
    let url = with_login(&store.url, user, None);
    fails_without_leaking(&["--store", &url, "--store-password-file", &file.arg()], &expected).await;
}

mod a_refused_login_never_shows_the_password {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        a_refused_login_never_shows_the_password(Kind::Postgres).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql() {
        a_refused_login_never_shows_the_password(Kind::MySql).await;
    }
}

/// A coordinator started with `--store-password-file` (PostgreSQL's local trust login takes
/// any password) serves, logs the store URL without a password, and writes no piece of the
/// password at debug level, from start to a clean stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_file_starts_a_coordinator_and_no_log_line_holds_the_password() {
    let _serial = serial().await;
    let Some(store) = TestStore::of(Kind::Postgres) else { return };
    let url = with_login(&store.url, user_of(&store.url), None);
    let file = PasswordFile::new(&format!("{PASSWORD}\n"));
    let mut cluster = TestCluster::new(BIN, store);
    cluster.route_store("c1", url.clone());

    phase("start with the password in a file, logging at debug level");
    let path = file.arg();
    let mut node = cluster.spawn("c1", &["--log-level", "debug"], &[("LEASEHOLD_STORE__PASSWORD_FILE", &path)]);
    node.wait_serving(Duration::from_secs(20)).await;
    let connected = node.events("connected to the store");
    assert_eq!(connected.len(), 1, "{}", node.output());
    assert_eq!(connected[0]["url"], url.as_str(), "the store URL is logged as given, without a password");

    phase("stop it; nothing it wrote holds the password");
    node.terminate();
    let status = node.wait_exit(Duration::from_secs(20)).await.expect("a terminated coordinator exits");
    assert!(status.success(), "{status}:\n{}", node.output());
    assert_no_leak("a coordinator with a password file", &node.output());
    assert!(Path::new(&path).is_file(), "the password file is left in place");
}
