"""client.toml: read once, refused loudly when wrong, and beaten by the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mirrorfleet.cli import cli
from mirrorfleet.client.settings import ENV, click_defaults, load_settings
from mirrorfleet.errors import UserError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_users_file_wins_key_by_key(tmp_path: Path) -> None:
    system = write(tmp_path / "etc/client.toml", 'zone = "a.test"\nport = 5353\nkeys = ["K1"]\n')
    user = write(tmp_path / "home/client.toml", 'zone = "b.test"\ntimeout = 3\n')
    settings = load_settings([system, user, tmp_path / "missing.toml"])
    assert settings == {"zone": "b.test", "port": 5353, "keys": ["K1"], "timeout": 3}
    assert click_defaults(settings) == {
        "zone": "b.test",
        "port": 5353,
        "keys": ("K1",),
        "timeout": 3,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('zone = "a"\ndnsec = "/x"\n', "unknown key 'dnsec'"),
        ('keys = "K1"\n', "keys must be a list of strings"),
        ('port = "53"\n', "port must be an integer"),
        ("root_threshold = true\n", "root_threshold must be an integer"),
        ("zone = \n", "not TOML"),
    ],
)
def test_a_wrong_file_is_refused_with_its_name_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path / "client.toml", text)
    with pytest.raises(UserError, match=message) as caught:
        load_settings([path])
    assert str(path) in str(caught.value)


def test_every_client_command_takes_its_defaults_and_the_command_line_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No DNS is needed to see it: a --server that is not an IP is refused before any
    lookup, naming the value that came from the file or the command line."""
    path = write(
        tmp_path / "client.toml",
        'zone = "mirrors.test"\nkeys = ["Dvej1LGrusScI/8kmGloiYHiyBYweJYU6ASQ1PHw2/g="]\n'
        'servers = ["from-the-file"]\n',
    )
    monkeypatch.setenv(ENV, str(path))
    monkeypatch.delenv("MIRRORFLEET_KEY", raising=False)
    runner = CliRunner()
    for command in ("pick", "list", "pip-config"):
        result = runner.invoke(cli, [command])
        assert result.exit_code == 2, result.output
        assert "--server 'from-the-file' is not an IP address" in result.output
    flag = runner.invoke(cli, ["pick", "--server", "from-the-flag"])
    assert "--server 'from-the-flag' is not an IP address" in flag.output


def test_a_named_file_that_is_missing_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, str(tmp_path / "nope.toml"))
    result = CliRunner().invoke(cli, ["pick"])
    assert result.exit_code != 0
    assert "which does not exist" in str(result.exception) + result.output
