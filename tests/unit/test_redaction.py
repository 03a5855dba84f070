"""Redaction filters: Tetragon's semantics, the config key, the shipped
defaults against real command lines, the prefilter, and the process cache
(every event and sink gets the redacted text)."""

import json
import re

import pytest
from hypothesis import given, settings, strategies as st

from tetrad import config as cfg
from tetrad.decode.process import decode
from tetrad.events.model import exec_event
from tetrad.paths import shipped_etc_dir
from tetrad.process.cache import ProcessCache, ProcfsEntry
from tetrad.process.model import join_arguments
from tetrad.process.redaction import Redaction, RedactionFilter, Rule, required_literals
from tetrad.sinks.journald import journal_fields
from tetrad.timefmt import KtimeClock
from tests.unit.records import clone_bytes, exec_bytes

X = "*****"


def filters(*raw) -> Redaction:
    return Redaction.parse(list(raw))


@pytest.fixture(scope="module")
def shipped() -> Redaction:
    return cfg.load([shipped_etc_dir() / "tetrad.toml"]).redaction_filters


# ---- Tetragon's semantics (its pkg/fieldfilters/redaction_test.go cases) ----------

@pytest.mark.parametrize("pattern, text, want", [
    (r"(ab)cd", "abcd", X + "cd"),
    (r"(ab)cd", "cdef", "cdef"),
    (r"(ab)cd", "abef", "abef"),
    (r"(?:--password|-p)\s+(\S+)", "--password fooBarQuxBaz!", "--password " + X),
    (r"(?:--password|-p)\s+(\S+)", "-p fooBarQuxBaz!", "-p " + X),
    (r"(foo(bar))qux", "foobarqux", X + "qux"),          # the nested group is inside: skipped
    (r"(a)|(b)", "ab", X + X),                            # a group that took no part is skipped
    (r"(?:k=)(\S*)", "k= x", "k=" + X + " x"),            # an empty group is marked too
])
def test_each_capture_group_of_each_match_becomes_stars(pattern, text, want):
    assert filters({"redact": [pattern]}).apply("/bin/x", text) == want


def test_filters_apply_in_order_and_binary_regex_selects_processes():
    args = "--verbose=true --password ybx511!ackt544 --username foobar cheesecake TOPSECRET innocent"
    multi = filters({"redact": [r"(?:--password|-p)[\s=]+(\S+)", r"\W(TOPSECRET)\W", r"(cheese)cake"]})
    assert multi.apply("", args) == (f"--verbose=true --password {X} --username foobar "
                                     f"{X}cake {X} innocent")
    mysql_only = filters({"binary_regex": ["mysql$"], "redact": [r"(?:--password|-p)[\s=]+(\S+)"]})
    assert mysql_only.apply("/usr/bin/curl", args) == args
    assert mysql_only.apply("/usr/bin/mysql", args).startswith(f"--verbose=true --password {X} ")


def test_a_filter_can_be_a_json_string_as_in_tetragons_flag():
    red = filters('{"binary_regex": ["(?:^|/)app$"], "redact": ["--key=(\\\\S+)"]}')
    assert red.apply("/opt/app", "--key=abc x") == f"--key={X} x"
    assert red.apply("/opt/other", "--key=abc x") == "--key=abc x"


# ---- the config key ------------------------------------------------------------

def load(tmp_path, text: str) -> cfg.Config:
    layer = tmp_path / "tetrad.toml"
    layer.write_text(text)
    return cfg.load([shipped_etc_dir() / "tetrad.toml", layer])


@pytest.mark.parametrize("text, where, what", [
    ("[[redaction_filters]]\nredact = ['(unclosed']", "redaction_filters[0].redact[0]",
     "not a valid regular expression"),
    ("[[redaction_filters]]\nredact = ['(?:x)']\n[[redaction_filters]]\nredact = ['--k=\\S+']",
     "redaction_filters[0].redact[0]", "no capture group"),
    ("[[redaction_filters]]\nredact = ['(x)']\nbinary_regex = ['[']",
     "redaction_filters[0].binary_regex[0]", "not a valid regular expression"),
    ("[[redaction_filters]]\nredact = ['(x)']\nmatch = []", "redaction_filters[0]", "binary_regex"),
    ("[[redaction_filters]]\nredact = ['(x)']\nredcat = []", "redaction_filters[0]", "unknown keys"),
    ("[[redaction_filters]]\nbinary_regex = ['x']", "redaction_filters[0].redact", "list"),
    ("[[redaction_filters]]\nredact = []", "redaction_filters[0].redact", "at least one"),
    ("redaction_filters = ['not json']", "redaction_filters[0]", "not a JSON object"),
    ("redaction_filters = 'x'", "redaction_filters", "must be a list"),
])
def test_a_bad_filter_is_a_config_error_naming_file_and_key(tmp_path, text, where, what):
    with pytest.raises(cfg.ConfigError) as err:
        load(tmp_path, text)
    message = str(err.value)
    assert message.startswith(str(tmp_path / "tetrad.toml") + ": " + where), message
    assert what in message
    assert "unclosed" not in message            # the position, never the file's text


def test_a_layer_replaces_the_shipped_list_and_an_empty_list_turns_redaction_off(tmp_path, shipped):
    assert len(shipped.filters) >= 5
    mine = load(tmp_path, "[[redaction_filters]]\nredact = ['--pin=(\\d+)']").redaction_filters
    assert len(mine.filters) == 1
    assert mine.apply("/bin/x", "--pin=1234 --password=x") == f"--pin={X} --password=x"
    off = load(tmp_path, "redaction_filters = []").redaction_filters
    assert off.apply("/bin/x", "--password=hunter2") == "--password=hunter2"


def test_the_config_compiles_once_and_compares_by_content(tmp_path):
    a = load(tmp_path, "[[redaction_filters]]\nredact = ['--pin=(\\d+)']")
    b = load(tmp_path, "[[redaction_filters]]\nredact = ['--pin=(\\d+)']")
    assert a == b and isinstance(a.redaction_filters.filters[0].rules[0].pattern, re.Pattern)


# ---- the shipped defaults, against command lines seen in the wild --------------

SECRET = [
    ("/usr/bin/mysql", ["-uroot", "-phunter2", "shop"], f"-uroot -p{X} shop"),
    ("/usr/bin/mysql", ["--password=hunter2", "-h", "db"], f"--password={X} -h db"),
    ("/usr/bin/mariadb-dump", ["-pS3cr3t!", "--all-databases"], f"-p{X} --all-databases"),
    ("/usr/bin/mysql", ["-ptwo words"], f'"-p{X}"'),
    ("/usr/bin/psql", ["postgresql://app:s3cr3t@db:5432/app"], f"postgresql://app:{X}@db:5432/app"),
    ("/usr/bin/curl", ["-H", "Authorization: Bearer abc123def456", "https://api.example.com"],
     f'-H "Authorization: Bearer {X}" https://api.example.com'),
    ("/usr/bin/curl", ["-H", "authorization:Basic YWRtaW46aHVudGVyMg=="],
     f'-H "authorization:Basic {X}"'),
    ("/usr/bin/curl", ["-u", "admin:hunter2", "https://x"], f"-u admin:{X} https://x"),
    ("/usr/bin/curl", ["--user", "admin:two words", "https://x"], f'--user "admin:{X}" https://x'),
    ("/usr/bin/curl", ["-H", "X-Api-Key: abc123", "https://x"], f'-H "X-Api-Key: {X}" https://x'),
    ("/usr/bin/curl", ["-H", "Cookie: session=abc; csrftoken=def", "https://x"],
     f'-H "Cookie: {X}" https://x'),
    ("/usr/bin/curl", ["--cookie", "session=abc; id=1", "https://x"], f"--cookie {X} https://x"),
    ("/usr/bin/curl", ["https://api.example.com/v1?access_token=abc123&x=1"],
     f"https://api.example.com/v1?access_token={X}&x=1"),
    ("/usr/bin/wget", ["--password=hunter2", "ftp://x/f"], f"--password={X} ftp://x/f"),
    ("/usr/bin/wget", ["--http-password", "hunter2", "https://x/f"], f"--http-password {X} https://x/f"),
    ("/usr/bin/git", ["clone", "https://x-access-token:ghs_" + "A" * 36 + "@github.com/o/r"],
     f"clone https://x-access-token:{X}@github.com/o/r"),
    ("/usr/bin/git", ["clone", "https://ghp_" + "a1B2" * 9 + "@github.com/o/r"],
     f"clone https://{X}@github.com/o/r"),
    ("/usr/bin/env", ["PGPASSWORD=hunter2", "psql", "-h", "db"], f"PGPASSWORD={X} psql -h db"),
    ("/bin/sh", ["-c", "MYSQL_PWD=hunter2 mysql shop"], f'-c "MYSQL_PWD={X} mysql shop"'),
    ("/bin/sh", ["-c", "curl --password=hunter2 https://x"], f'-c "curl --password={X} https://x"'),
    ("/usr/bin/docker", ["login", "-u", "me", "-p", "hunter2", "registry.example.com"],
     f"login -u me -p {X} registry.example.com"),
    ("/usr/bin/docker", ["--config", "/tmp/c", "login", "-phunter2"], f"--config /tmp/c login -p{X}"),
    ("/usr/bin/podman", ["login", "--password", "hunter2", "quay.io"], f"login --password {X} quay.io"),
    ("/usr/bin/sshpass", ["-p", "hunter2", "ssh", "host"], f"-p {X} ssh host"),
    ("/usr/bin/redis-cli", ["-a", "hunter2", "ping"], f"-a {X} ping"),
    ("/usr/bin/redis-cli", ["-u", "redis://:hunter2@localhost:6379"], f"-u redis://:{X}@localhost:6379"),
    ("/usr/bin/aws", ["configure", "set", "aws_secret_access_key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"],
     f"configure set aws_secret_access_key {X}"),
    ("/usr/bin/env", ["AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG", "aws", "s3", "ls"],
     f"AWS_SECRET_ACCESS_KEY={X} aws s3 ls"),
    ("/usr/bin/aws", ["--access-key-id", "AKIAIOSFODNN7EXAMPLE"], f"--access-key-id {X}"),
    ("/usr/bin/kubectl", ["--token=abc.def", "get", "pods"], f"--token={X} get pods"),
    ("/usr/bin/kubectl", ["--token", "abc", "get", "pods"], f"--token {X} get pods"),
    ("/usr/bin/vault", ["login", "-method=userpass", "username=me", "password=hunter2"],
     f"login -method=userpass username=me password={X}"),
    ("/usr/bin/vault", ["login", "hvs.CAESIJ3jc2vdiDP6hYXUGGbvMqYpt"], f"login {X}"),
    ("/usr/bin/mount", ["-t", "cifs", "-o", "username=me,password=hunter2", "//srv/s", "/mnt"],
     f"-t cifs -o username=me,password={X} //srv/s /mnt"),
    ("/usr/bin/ldapsearch", ["-x", "-D", "cn=admin", "-w", "hunter2", "-b", "dc=x"],
     f"-x -D cn=admin -w {X} -b dc=x"),
    ("/usr/bin/openssl", ["enc", "-aes256", "-pass", "pass:hunter2", "-in", "f"],
     f"enc -aes256 -pass {X} -in f"),
    ("/usr/bin/openssl", ["pkcs12", "-passin", "pass:hunter2", "-passout", "env:P"],
     f"pkcs12 -passin {X} -passout {X}"),
    ("/opt/app", ["--client-secret=abc123"], f"--client-secret={X}"),
    ("/opt/app", ["-token=abc"], f"-token={X}"),
    ("/opt/app", ["--api-key", "abc"], f"--api-key {X}"),
    ("/opt/app", ["--apikey=abc", "--secret-key=def"], f"--apikey={X} --secret-key={X}"),
    ("/opt/app", ["--dbPassword=hunter2"], f"--dbPassword={X}"),
    ("/opt/app", ["--password=two words"], f'"--password={X}"'),
    ("/opt/app", ["--password", "two words", "next"], f"--password {X} next"),
    ("/opt/app", ['--db-password=p@ss"word'], f"--db-password={X}"),
    ("/opt/app", ["--passphrase", "correct horse"], f"--passphrase {X}"),
    ("/usr/bin/java", ["-Djavax.net.ssl.trustStorePassword=changeit", "-jar", "app.jar"],
     f"-Djavax.net.ssl.trustStorePassword={X} -jar app.jar"),
    ("/usr/bin/helm", ["install", "db", "--set", "auth.rootPassword=hunter2"],
     f"install db --set auth.rootPassword={X}"),
    ("/opt/app", ["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"],
     X),
    ("/opt/bot", ["--slack", "xoxb-1234567890-abcdefghij"], f"--slack {X}"),
    ("/usr/bin/npm", ["config", "set", "//registry.npmjs.org/:_authToken=npm_" + "a" * 36],
     f"config set //registry.npmjs.org/:_authToken={X}"),
    ("/usr/sbin/useradd", ["-m", "-p", "$6$salt$hash", "alice"], f"-m -p {X} alice"),
    ("/usr/bin/smbclient", ["//srv/share", "-U", "me%hunter2"], f"//srv/share -U me%{X}"),
]

CLEAR = [
    ("/usr/bin/ls", ["-la", "/tmp"]),
    ("/usr/bin/ssh", ["-p", "2222", "user@host"]),
    ("/usr/bin/scp", ["file", "user@host:/path"]),
    ("/usr/bin/psql", ["-p", "5432", "-h", "db", "-U", "app"]),
    ("/usr/bin/docker", ["run", "-p", "8080:80", "-u", "1000:1000", "nginx"]),
    ("/usr/bin/mysql", ["-P", "3306", "-h", "db", "-p"]),
    ("/usr/bin/mysqladmin", ["-p", "two words", "status"]),    # -p alone prompts
    ("/usr/bin/passwd", ["alice"]),
    ("/usr/bin/git", ["log", "--oneline", "-p"]),
    ("/usr/sbin/useradd", ["-m", "alice"]),
    ("/usr/bin/grep", ["-r", "token", "src/"]),
    ("/usr/bin/grep", ["--color=auto", "password", "notes.txt"]),
    ("/usr/bin/curl", ["-sSf", "https://example.com/path?page=2"]),
    ("/usr/bin/gcc", ["-O2", "-Wall", "-o", "out", "main.c"]),
    ("/usr/bin/sudo", ["-u", "postgres", "psql"]),
    ("/usr/bin/docker", ["login", "--password-stdin", "-u", "me"]),
    ("/opt/app", ["--token-file", "/var/run/secrets/token", "--password-file=/etc/pw"]),
    ("/usr/bin/tar", ["--exclude=secrets.yaml", "-czf", "a.tgz", "."]),
    ("/usr/bin/kubectl", ["create", "secret", "generic", "x", "--from-file=key=./k"]),
    ("/usr/bin/systemctl", ["status", "passwd.service"]),
    ("/usr/bin/env", ["PWD=/tmp", "ls"]),
    ("/usr/bin/ps", ["-p", "1234", "-o", "pid,cmd"]),
    ("/usr/bin/python3", ["-m", "pytest", "-q", "tests/unit/test_redaction.py"]),
    ("/usr/bin/redis-server", ["--port", "6379", "-a"]),
    ("/usr/bin/openssl", ["passwd", "-6"]),
]


@pytest.mark.parametrize("binary, argv, want", SECRET, ids=[" ".join(c[1])[:40] for c in SECRET])
def test_shipped_defaults_hide_secrets_of_real_command_lines(shipped, binary, argv, want):
    got = shipped.apply(binary, join_arguments(argv))
    assert got == want
    for secret in ("hunter2", "s3cr3t", "abc123", "wJalrXUtnFEMI", "ybx511"):
        assert secret not in got


@pytest.mark.parametrize("binary, argv", CLEAR, ids=[" ".join(c[1])[:40] for c in CLEAR])
def test_shipped_defaults_leave_command_lines_without_secrets_alone(shipped, binary, argv):
    text = join_arguments(argv)
    assert shipped.apply(binary, text) == text


# ---- the prefilter ---------------------------------------------------------------

@pytest.mark.parametrize("pattern, literals", [
    (r"--password=(\S+)", ("--password=",)),
    (r"(?i)(?:token|secret)=(\S+)", ("secret", "token")),
    (r"\s(\S+)", None),                               # no literal at all
    (r"(?i)x(?<=kx)(y)", ("kx",)),                    # a positive lookbehind counts
    ("(?i)(\u212a)", None),                          # KELVIN SIGN matches k: not ASCII, no prefilter
])
def test_the_literals_every_match_must_contain(pattern, literals):
    assert required_literals(re.compile(pattern)) == literals
    if literals is None and "\u212a" in pattern:
        assert filters({"redact": [pattern]}).apply("/bin/x", "k") == X


def without_prefilter(red: Redaction) -> Redaction:
    return Redaction(tuple(RedactionFilter(tuple(Rule(r.pattern, None) for r in f.rules), f.binaries)
                           for f in red.filters))


PIECES = ["--password", "-p", "=", " ", '"', "\\", "token", "Secret", "_", "-", "x", "7", "://",
          ":", "@", "Authorization:", "Bearer ", "cookie:", ";", "AKIA", "eyJ", ".", "K", "ſ", "PWD",
          "login", "%", "&", "?"]


@settings(max_examples=400, deadline=None, database=None)
@given(st.lists(st.sampled_from(PIECES), max_size=14).map("".join),
       st.sampled_from(["/usr/bin/mysql", "/usr/bin/docker", "/usr/bin/curl", "/bin/true"]))
def test_the_prefilter_never_skips_a_pattern_that_would_match(shipped, text, binary):
    assert shipped.apply(binary, text) == without_prefilter(shipped).apply(binary, text)


# ---- in the process cache: every event and sink sees the redacted text -------------

def kclock():
    return KtimeClock(wall_ns=lambda: 1_700_000_000_000_000_000, mono_ns=lambda: 0)


def test_exec_and_proc_entries_are_redacted_once_for_every_event_and_sink(shipped):
    cache = ProcessCache("n", kclock(), redaction=shipped)
    seeded = cache.add_procfs(ProcfsEntry(
        pid=50, ktime=500, start_time_ns=0, ppid=1, parent_ktime=10, uid=0, gid=0, auid=0,
        cwd="/", binary="/usr/bin/sshpass", argv=("sshpass", "-p", "hunter2", "ssh", "db")))
    assert seeded.arguments == f"-p {X} ssh db"
    cache.on_clone(decode(clone_bytes(pid=101, ktime=2000, parent=(50, 500))))
    child, parent = cache.on_exec(decode(exec_bytes(
        pid=101, ktime=3000, argv=("/usr/bin/app", "--password=hunter2", "--token", "t0k3n", "keep-me"),
        exe="/usr/bin/app", cwd="/tmp", parent=(50, 500))))
    assert parent is seeded
    assert child.arguments == f"--password={X} --token {X} keep-me"
    event = exec_event(1, child, parent)
    text = json.dumps(journal_fields(event, "n"))
    assert "hunter2" not in text and "t0k3n" not in text
    fields = dict(f.split("=", 1) for f in journal_fields(event, "n"))
    assert "keep-me" in fields["MESSAGE"] and X in fields["MESSAGE"]
    exported = json.loads(fields["TETRAD_JSON"])["process_exec"]
    assert exported["process"]["arguments"] == child.arguments
    assert exported["parent"]["arguments"] == f"-p {X} ssh db"
