"""The Linux install, upgrade and uninstall scripts, run for real on a staged root (`--root`).

The build is a stand-in here (a shell script that answers `--version` like the agent): these
tests are about what the scripts do with files. What `--root` skips (users, systemctl, udevadm)
is the part only a till with systemd can show; `test_build.py` runs the real binary.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINUX = ROOT / "installer" / "linux"
NAME = "kopilka-agent"


def make_bundle(folder: Path, version: str) -> Path:
    bundle = folder / f"build-{version}" / NAME
    (bundle / "_internal").mkdir(parents=True, exist_ok=True)
    executable = bundle / NAME
    executable.write_text(f'#!/bin/sh\necho "kopilka-agent {version} (protocol 1)"\n')
    executable.chmod(0o755)
    (bundle / "_internal" / "marker").write_text(version)
    return bundle


def run(script: str, *args: str | Path) -> str:
    result = subprocess.run(
        ["bash", str(LINUX / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def current_marker(root: Path) -> str:
    return (root / "opt" / NAME / "current" / "_internal" / "marker").read_text()


@pytest.fixture
def staged(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    run("install.sh", "--root", root, "--bundle", make_bundle(tmp_path, "0.1.0"))
    return root


def test_install_lays_out_program_config_data_unit_and_rule(staged: Path) -> None:
    assert current_marker(staged) == "0.1.0"
    config = staged / "etc" / NAME / "agent.toml"
    assert config.read_text() == (LINUX / "agent.toml").read_text()
    assert oct(config.stat().st_mode & 0o777) == "0o640"
    assert (staged / "var" / "lib" / NAME).is_dir()
    unit = staged / "etc" / "systemd" / "system" / f"{NAME}.service"
    assert unit.read_text() == (LINUX / f"{NAME}.service").read_text()
    rule = (staged / "etc" / "udev" / "rules.d" / "70-kopilka-scanner.rules").read_text()
    assert 'ATTRS{idVendor}=="?*", ATTRS{idProduct}=="?*"' in rule
    command = staged / "usr" / "local" / "bin" / NAME
    assert os.access(command, os.X_OK)
    assert "runuser -u kopilka" in command.read_text()
    assert "@VENDOR@" not in rule


def test_install_refuses_a_second_install(staged: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            "bash",
            str(LINUX / "install.sh"),
            "--root",
            str(staged),
            "--bundle",
            str(make_bundle(tmp_path, "0.2.0")),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "use upgrade.sh" in result.stderr


def test_upgrade_keeps_data_credential_and_config_and_backs_them_up(
    staged: Path, tmp_path: Path
) -> None:
    data = staged / "var" / "lib" / NAME
    (data / "till.db").write_bytes(b"SQLite format 3\x00 sales and outbox")
    (data / "till.db-wal").write_bytes(b"wal frames not yet checkpointed")
    (data / "device-credential").write_text("secret")
    (data / "phone-hash.key").write_text("ab" * 32)
    config = staged / "etc" / NAME / "agent.toml"
    config.write_text(config.read_text() + '\ncentral_url = "https://central.example"\n')
    before = fingerprint(data)
    config_before = config.read_bytes()

    run("upgrade.sh", "--root", staged, "--bundle", make_bundle(tmp_path, "0.2.0"))

    assert current_marker(staged) == "0.2.0"
    assert fingerprint(data) == before
    assert config.read_bytes() == config_before
    (backup,) = (staged / "var" / "backups" / NAME).iterdir()
    assert fingerprint(backup) == before


def test_upgrade_keeps_the_scanner_ids_and_two_releases(staged: Path, tmp_path: Path) -> None:
    run("uninstall.sh", "--root", staged)
    run(
        "install.sh",
        "--root",
        staged,
        "--bundle",
        make_bundle(tmp_path, "0.1.0"),
        "--scanner",
        "0C2E:0B61",
    )
    for version in ("0.2.0", "0.3.0", "0.4.0"):
        run("upgrade.sh", "--root", staged, "--bundle", make_bundle(tmp_path, version))
    rule = (staged / "etc" / "udev" / "rules.d" / "70-kopilka-scanner.rules").read_text()
    assert 'ATTRS{idVendor}=="0c2e", ATTRS{idProduct}=="0b61"' in rule
    releases = sorted(path.name for path in (staged / "opt" / NAME / "releases").iterdir())
    assert [name.rsplit("-", 1)[1] for name in releases] == ["0.3.0", "0.4.0"]
    assert current_marker(staged) == "0.4.0"


def test_uninstall_keeps_config_and_data_unless_purged(staged: Path, tmp_path: Path) -> None:
    data = staged / "var" / "lib" / NAME
    (data / "till.db").write_bytes(b"outbox with unsent sales")
    run("upgrade.sh", "--root", staged, "--bundle", make_bundle(tmp_path, "0.2.0"))

    run("uninstall.sh", "--root", staged)
    assert not (staged / "opt" / NAME).exists()
    assert not (staged / "etc" / "systemd" / "system" / f"{NAME}.service").exists()
    assert not (staged / "etc" / "udev" / "rules.d" / "70-kopilka-scanner.rules").exists()
    assert not (staged / "usr" / "local" / "bin" / NAME).exists()
    assert (data / "till.db").read_bytes() == b"outbox with unsent sales"
    assert (staged / "etc" / NAME / "agent.toml").exists()

    run("install.sh", "--root", staged, "--bundle", make_bundle(tmp_path, "0.3.0"))
    assert (data / "till.db").read_bytes() == b"outbox with unsent sales"

    run("uninstall.sh", "--root", staged, "--purge")
    for gone in ("etc/" + NAME, "var/lib/" + NAME, "var/backups/" + NAME):
        assert not (staged / gone).exists(), gone


def test_scripts_refuse_a_build_that_does_not_run(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "0.1.0")
    (bundle / NAME).write_text("#!/bin/sh\nexit 127\n")
    result = subprocess.run(
        [
            "bash",
            str(LINUX / "install.sh"),
            "--root",
            str(tmp_path / "root"),
            "--bundle",
            str(bundle),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "does not run on this machine" in result.stderr
    assert not (tmp_path / "root" / "opt").exists()


def test_unit_passes_systemd_analyze_verify(staged: Path) -> None:
    """The unit as install.sh put it, checked against the staged root (so ExecStart's program
    exists) with the system's own units copied in for the targets it names."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    shutil.copytree(
        "/usr/lib/systemd/system", staged / "usr" / "lib" / "systemd" / "system", symlinks=True
    )
    unit = f"/etc/systemd/system/{NAME}.service"
    result = subprocess.run(
        [analyze, "verify", "--man=no", f"--root={staged}", unit],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == "", "warnings: " + result.stdout + result.stderr


def test_shipped_and_documented_configurations_load() -> None:
    """The example install.sh installs and the one docs/install.md shows are valid settings."""
    from agent._config import load_settings

    shipped = load_settings(LINUX / "agent.toml")
    assert str(shipped.data_dir) == f"/var/lib/{NAME}"
    doc = (ROOT / "docs" / "install.md").read_text(encoding="utf-8")
    (block,) = [part.split("```", 1)[0] for part in doc.split("```toml\n")[1:]]
    documented = load_settings(None, **tomllib.loads(block))
    assert str(documented.data_dir) == f"/var/lib/{NAME}"
    assert documented.devices.printers[0].name == "slip"


def test_unit_hardening_stays_rated_ok(staged: Path) -> None:
    """`systemd-analyze security` rates the unit 2.0 ("OK") today; 3.0 or worse means a
    hardening option was dropped."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    shutil.copytree(
        "/usr/lib/systemd/system", staged / "usr" / "lib" / "systemd" / "system", symlinks=True
    )
    result = subprocess.run(
        [
            analyze,
            "security",
            "--offline=yes",
            f"--root={staged}",
            "--no-pager",
            f"/etc/systemd/system/{NAME}.service",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    assert float(match.group(1)) < 3.0, result.stdout
