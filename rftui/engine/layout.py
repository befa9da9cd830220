"""The experiment directory: where state.db, checkpoints, adapters, logs and data snapshots live."""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ExperimentDir:
    root: Path

    @classmethod
    def of(cls, workdir: str | Path, name: str) -> "ExperimentDir":
        return cls(Path(workdir).expanduser().resolve() / name)

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def resume_command(self) -> str:
        """What continues it from any directory (`rftui resume NAME` alone finds only the default workdir's)."""
        return self.command("resume")

    def command(self, verb: str, *args: str) -> str:
        """`rftui VERB NAME ARGS --workdir WORKDIR`: a hint that works from any directory, as resume_command."""
        return " ".join(["rftui", verb, self.name, *args, "--workdir", shlex.quote(str(self.workdir))])

    @property
    def workdir(self) -> Path:
        return self.root.parent

    @property
    def state_db(self) -> Path:
        return self.root / "state.db"

    @property
    def config_file(self) -> Path:
        return self.root / "experiment.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def adapters(self) -> Path:
        return self.root / "adapters"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def data_file(self, split: str, key: str = "") -> Path:
        return self.data / (f"{split}-{key}.jsonl" if key else f"{split}.jsonl")

    def exists(self) -> bool:
        return self.state_db.exists()


def experiment_names(workdir: str | Path) -> list[str]:
    """The experiments in a workdir, sorted (none when it cannot be read)."""
    try:
        return sorted(p.name for p in Path(workdir).expanduser().iterdir() if ExperimentDir(p).exists())
    except OSError:
        return []


def closest_experiment(workdir: str | Path, name: str) -> str | None:
    """The experiment of the workdir whose name is closest to a mistyped `name` (for "did you mean")."""
    import difflib

    close = difflib.get_close_matches(name, experiment_names(workdir), n=1)
    return close[0] if close else None
