"""The CLI contract: names, flags, outputs, exit codes, one-line errors."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from hnet.interop import VECTOR_FILE_NAME, find_vector_file
from hns import Registry

from .conftest import INTEROP, run_cli


def test_help_everywhere() -> None:
    for args in (
        [],
        ["keygen"],
        ["hns"],
        ["hns", "register"],
        ["hns", "show"],
        ["node"],
        ["ping"],
        ["peers"],
        ["diag"],
        ["demo"],
        ["interop"],
        ["interop", "vectors"],
    ):
        res = run_cli(*args, "--help")
        assert res.returncode == 0, (args, res.stderr)
        assert "usage: hnet" in res.stdout


def test_keygen_writes_0600_and_prints_public_key(tmp_path: Path) -> None:
    out = tmp_path / "k"
    res = run_cli("keygen", "--out", str(out))
    assert res.returncode == 0, res.stderr
    pub = res.stdout.strip()
    assert len(bytes.fromhex(pub)) == 32
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    again = run_cli("keygen", "--out", str(out))
    assert again.returncode == 1 and "already exists" in again.stderr


def test_register_and_show(tmp_path: Path) -> None:
    key = tmp_path / "k"
    pub = run_cli("keygen", "--out", str(key)).stdout.strip()
    reg = tmp_path / "reg"
    res = run_cli(
        "hns",
        "register",
        "alice.os",
        "--key",
        str(key),
        "--ip",
        "127.0.0.1",
        "--tcp-port",
        "9000",
        "--ws-port",
        "9001",
        "--registry",
        str(reg),
    )
    assert res.returncode == 0, res.stderr
    show = run_cli("hns", "show", "alice.os", "--registry", str(reg), "--json")
    rec = json.loads(show.stdout)
    assert rec["net_key"] == pub
    assert rec["ips"] == ["127.0.0.1"] and rec["ports"] == {"tcp": 9000, "ws": 9001}
    # an indirect node through alice, by public key
    res = run_cli(
        "hns",
        "register",
        "bob.os",
        "--public-key",
        "0x" + "ab" * 32,
        "--routers",
        "alice.os",
        "--registry",
        str(reg),
    )
    assert res.returncode == 0, res.stderr
    assert Registry(reg).resolve("bob.os").routers == ("alice.os",)
    # the files are hypermap-cacher style logs
    files = sorted(reg.glob("*.json"))
    assert files and all("logs" in json.loads(f.read_text()) for f in files)


def test_register_errors_are_one_line(tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    cases = [
        [
            "hns",
            "register",
            "Alice.os",
            "--public-key",
            "ab" * 32,
            "--ip",
            "127.0.0.1",
            "--tcp-port",
            "1",
        ],
        ["hns", "register", "a.os", "--public-key", "abcd", "--ip", "127.0.0.1", "--tcp-port", "1"],
        [
            "hns",
            "register",
            "a.os",
            "--public-key",
            "ab" * 32,
            "--ip",
            "300.1.1.1",
            "--tcp-port",
            "1",
        ],
        ["hns", "register", "a.os", "--public-key", "ab" * 32, "--routers", "nobody.os"],
        [
            "hns",
            "register",
            "a.os",
            "--public-key",
            "ab" * 32,
            "--ip",
            "127.0.0.1",
            "--routers",
            "x.os",
        ],
        ["hns", "show", "nobody.os"],
    ]
    for args in cases:
        res = run_cli(*args, "--registry", str(reg))
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1, (args, res.stderr)
        assert "Traceback" not in res.stderr


def test_show_uses_hnet_home_registry(tmp_path: Path) -> None:
    res = run_cli(
        "hns",
        "register",
        "z.os",
        "--public-key",
        "cd" * 32,
        "--ip",
        "::1",
        "--ws-port",
        "7",
        home=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "registry").is_dir()
    assert "::1" in run_cli("hns", "show", "z.os", home=tmp_path).stdout


def test_interop_vectors_command() -> None:
    res = run_cli("interop", "vectors", str(INTEROP / "hyperware-msgpack-vectors.tsv"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().splitlines()[-1] == "39 passed, 0 failed"


def test_interop_vectors_reports_failures(tmp_path: Path) -> None:
    src = (INTEROP / "hyperware-msgpack-vectors.tsv").read_text().splitlines()
    rows = [line for line in src if line and not line.startswith("#")][:3]
    name, typ, hexs = rows[0].split("\t")
    rows[0] = f"{name}\t{typ}\t{hexs[:-2]}"  # truncated
    rows.append("bogus\tNoSuchType\t00")
    f = tmp_path / "v.tsv"
    f.write_text("\n".join(rows) + "\n")
    res = run_cli("interop", "vectors", str(f))
    assert res.returncode == 1
    lines = res.stdout.strip().splitlines()
    assert lines[-1] == "2 passed, 2 failed"
    assert any(name in line for line in lines[:-1]) and any("bogus" in line for line in lines)


def test_interop_vectors_default_file() -> None:
    res = run_cli("interop", "vectors")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().splitlines()[-1] == "39 passed, 0 failed"


def test_interop_vectors_missing_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    res = run_cli("interop", "vectors", str(tmp_path / "none.tsv"))
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.strip() == f"{tmp_path / 'none.tsv'}: No such file or directory"
    monkeypatch.setenv("HNET_INTEROP_DIR", str(tmp_path))  # no fallback to the repository's
    res = run_cli("interop", "vectors")
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.startswith(f"reference vector file not found: {tmp_path / VECTOR_FILE_NAME}")
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_find_vector_file_has_no_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HNET_INTEROP_DIR", raising=False)
    assert find_vector_file() == INTEROP / VECTOR_FILE_NAME
    assert find_vector_file(INTEROP) == INTEROP / VECTOR_FILE_NAME
    with pytest.raises(FileNotFoundError, match="reference vector file not found: "):
        find_vector_file(tmp_path)
    monkeypatch.setenv("HNET_INTEROP_DIR", str(tmp_path))  # explicit: the repository is not tried
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        find_vector_file()
