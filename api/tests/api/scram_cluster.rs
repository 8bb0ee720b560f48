//! A throwaway PostgreSQL cluster set up the way docker-compose.yml sets up its `db` service
//! (initdb with the same superuser, password and `--auth-host=scram-sha-256`, then the image's
//! `host all all all scram-sha-256` line), on a free loopback port, removed when dropped.
//!
//! No Docker engine runs here, so this is how the configuration compose hands to PostgreSQL
//! is exercised: the same server binaries, the same authentication rules, the same credentials.

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use sea_orm::sqlx::{self, AssertSqlSafe, Connection, PgConnection};

pub struct ScramCluster {
    directory: PathBuf,
    bin: PathBuf,
    pub port: u16,
    tls_only: bool,
    /// The server settings passed with `pg_ctl start -o`.
    server_options: String,
}

/// `docker-compose.yml`'s `POSTGRES_INITDB_ARGS`: scram for every host line; the socket stays
/// trusted, as in the image, for the init step.
const INITDB_AUTH: [&str; 2] = ["--auth-host=scram-sha-256", "--auth-local=trust"];

/// How the cluster differs from the compose one, for the cases that need it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClusterOptions {
    /// Serve TLS and admit TCP clients over TLS only (`hostssl` rules).
    pub tls_only: bool,
    /// Listen on this port instead of a free one.
    pub port: Option<u16>,
}

impl ScramCluster {
    /// Starts a cluster whose superuser `user` has `password` and which holds `database`.
    pub async fn start(user: &str, password: &str, database: &str) -> Self {
        let cluster = Self::start_server(user, password, ClusterOptions::default());
        cluster.create_database(user, password, database).await;
        cluster
    }

    /// Initialises and starts the server, blocking until it accepts connections.
    pub fn start_server(user: &str, password: &str, options: ClusterOptions) -> Self {
        let bin = server_binaries();
        let directory = std::env::temp_dir().join(format!(
            "stations-scram-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        fs::create_dir_all(&directory).expect("create the cluster directory");
        let password_file = directory.join("password");
        fs::write(&password_file, format!("{password}\n")).expect("write the password file");
        let mut server_settings = String::new();
        if options.tls_only {
            let (certificate, key) = (directory.join("server.crt"), directory.join("server.key"));
            check(run(Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=localhost", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&certificate)));
            check(run(Command::new("chmod").arg("600").arg(&key)));
            server_settings = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                certificate.display(),
                key.display()
            );
        }
        if running_as_root() {
            // initdb refuses to run as root; the postgres account owns the cluster instead.
            check(run(Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(&directory)));
        }

        let data = directory.join("data");
        let mut initdb = as_cluster_owner(&bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .arg(format!("--username={user}"))
            .arg(format!("--pwfile={}", password_file.display()))
            .args(INITDB_AUTH)
            .arg("--encoding=UTF8")
            .arg("--no-sync");
        check(run(&mut initdb));
        let hba = data.join("pg_hba.conf");
        let rules = if options.tls_only {
            "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n".to_owned()
        } else {
            // What the image appends for connections from other containers.
            fs::read_to_string(&hba).expect("read pg_hba.conf")
                + "\nhost all all all scram-sha-256\n"
        };
        fs::write(&hba, rules).expect("write pg_hba.conf");

        let server_options = |port: u16| {
            format!(
                "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={} -c fsync=off{server_settings}",
                directory.display()
            )
        };
        let port = options.port.unwrap_or_else(free_port);
        let mut cluster = Self {
            server_options: server_options(port),
            directory: directory.clone(),
            bin,
            port,
            tls_only: options.tls_only,
        };
        // A port found free can be taken by another test before PostgreSQL binds it; the server
        // then exits at once, and starts again on another port.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match cluster.try_start() {
                Ok(()) => return cluster,
                Err(log)
                    if options.port.is_none()
                        && attempts < 3
                        && log.contains("Address already in use") =>
                {
                    cluster.port = free_port();
                    cluster.server_options = server_options(cluster.port);
                }
                Err(log) => panic!("PostgreSQL did not start:\n{log}"),
            }
        }
    }

    /// A streaming standby of this cluster, made as operators make one (`pg_basebackup -R`
    /// by `user`, the superuser, who may replicate), started on a free loopback port.
    pub fn start_standby(&self, user: &str, password: &str) -> Self {
        let directory = owned_directory("stations-standby");
        let mut backup = as_cluster_owner(&self.bin.join("pg_basebackup"));
        backup
            .arg("-D")
            .arg(directory.join("data"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", user])
            .args(["-R", "-X", "stream", "--no-sync", "-c", "fast"])
            .env("PGPASSWORD", password);
        check(run(&mut backup));
        Self::start_in(directory, self.tls_only)
    }

    /// Starts a server on the data `directory/data` holds (a copy made by pg_basebackup), on a
    /// free loopback port; it is removed when dropped.
    pub fn start_in(directory: PathBuf, tls_only: bool) -> Self {
        let port = free_port();
        let cluster = Self {
            server_options: format!(
                "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={} -c fsync=off",
                directory.display()
            ),
            directory,
            bin: server_binaries(),
            port,
            tls_only,
        };
        if let Err(log) = cluster.try_start() {
            panic!("the server did not start:\n{log}");
        }
        cluster
    }

    /// Where the cluster keeps its data and its socket.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Makes the server read its configuration files again (`pg_hba.conf`).
    pub fn reload(&self) {
        let mut reload = as_cluster_owner(&self.bin.join("pg_ctl"));
        reload
            .arg("-D")
            .arg(self.directory.join("data"))
            .arg("reload");
        check(run(&mut reload));
    }

    /// Starts the server again after [`stop_immediately`](Self::stop_immediately), on the
    /// same port with the same data.
    pub fn start_again(&self) {
        if let Err(log) = self.try_start() {
            panic!("PostgreSQL did not start again:\n{log}");
        }
    }

    /// `pg_ctl start`, waiting until the server accepts connections; what it and the server
    /// logged when it did not start.
    fn try_start(&self) -> Result<(), String> {
        let mut start = as_cluster_owner(&self.bin.join("pg_ctl"));
        start
            .arg("-D")
            .arg(self.directory.join("data"))
            .arg("-l")
            .arg(self.directory.join("server.log"))
            .arg("-o")
            .arg(&self.server_options)
            .arg("-w")
            .arg("start");
        let output = run(&mut start);
        if output.status.success() {
            return Ok(());
        }
        let server_log = fs::read_to_string(self.directory.join("server.log")).unwrap_or_default();
        Err(format!(
            "{}{}{server_log}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }

    /// Stops the server the hard way, as a crash would: no checkpoint, sessions cut.
    pub fn stop_immediately(&self) {
        let mut stop = as_cluster_owner(&self.bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(self.directory.join("data"))
            .args(["-m", "immediate", "-w", "stop"]);
        check(run(&mut stop));
    }

    pub async fn create_database(&self, user: &str, password: &str, database: &str) {
        let mut connection = PgConnection::connect(&self.url(user, Some(password), "postgres"))
            .await
            .expect("connect to the new cluster as its superuser");
        sqlx::raw_sql(AssertSqlSafe(format!(r#"CREATE DATABASE "{database}""#)))
            .execute(&mut connection)
            .await
            .expect("create the database");
        let _ = connection.close().await;
    }

    /// A URL for this cluster; `password` None leaves it out of the URL altogether.
    pub fn url(&self, user: &str, password: Option<&str>, database: &str) -> String {
        let credentials = match password {
            Some(password) => format!("{user}:{password}"),
            None => user.to_owned(),
        };
        let sslmode = if self.tls_only { "require" } else { "disable" };
        format!(
            "postgres://{credentials}@127.0.0.1:{}/{database}?sslmode={sslmode}",
            self.port
        )
    }

    /// The server's own log, for assertions about what it recorded.
    pub fn server_log(&self) -> String {
        fs::read_to_string(self.directory.join("server.log")).unwrap_or_default()
    }
}

impl Drop for ScramCluster {
    fn drop(&mut self) {
        let mut stop = as_cluster_owner(&self.bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(self.directory.join("data"))
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = run(&mut stop);
        let _ = fs::remove_dir_all(&self.directory);
    }
}

/// The newest PostgreSQL server binaries on this machine: Debian installs them under
/// /usr/lib/postgresql/<major>/bin; elsewhere `pg_config --bindir` knows.
fn server_binaries() -> PathBuf {
    let mut majors: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
                .filter(|bin| bin.join("initdb").is_file())
                .collect()
        })
        .unwrap_or_default();
    majors.sort_by_key(|bin| {
        bin.parent()
            .and_then(Path::file_name)
            .and_then(|name| name.to_str())
            .and_then(|name| name.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(bin) = majors.pop() {
        return bin;
    }
    let output = Command::new("pg_config").arg("--bindir").output();
    match output {
        Ok(output) if output.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
        }
        _ => panic!(
            "PostgreSQL server binaries (initdb, pg_ctl) were not found: install Debian's \
             `postgresql` package (`bash .ci/run` does)"
        ),
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A new empty directory the cluster owner may write to, removed by the caller.
pub fn owned_directory(prefix: &str) -> PathBuf {
    let directory =
        std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), rand_suffix()));
    fs::create_dir_all(&directory).expect("create a directory");
    if running_as_root() {
        check(run(Command::new("chown")
            .arg("-R")
            .arg("postgres:")
            .arg(&directory)));
    }
    directory
}

/// `program`, run as the `postgres` account when we are root.
pub fn as_cluster_owner(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

pub fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("could not run {command:?}: {error}"))
}

pub fn check(output: Output) {
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default()
}
