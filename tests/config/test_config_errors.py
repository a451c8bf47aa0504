"""A wrong configuration is one line naming the field, and exit 1: never a validation traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from acpd.cli import main


@pytest.mark.parametrize(
    ("toml", "said"),
    [
        ('[daemon]\nport = "x"\n', "[daemon] port: "),
        ("[policy]\nmaxSteps = -1\n", "[policy] maxSteps: "),
        ('[agents.mine]\ncommand = "x"\nargs = "-v"\n', "[agents.mine] args: "),
    ],
)
def test_a_wrong_config_file_is_one_line_naming_the_field_not_a_traceback(
    toml: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml)
    with pytest.raises(SystemExit) as exited:
        main(["agents", "list", "--config", str(path)])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
