"""The example data sets: where each file comes from, its sha256, its licence; fetching them.

Every file is pinned to one commit of a public GitHub repository and to its sha256 (each was
checked against the blob at that commit), so `gradwise datasets get NAME` fetches exactly
the bytes the examples and benchmarks were run on, or stops. Nothing here runs unless that
command (or `fetch`) is called: training never downloads.

A data set lands in `<folder>/<name>/<file>`, the layout of the data home (`data_home`), so a
folder that holds sets in that layout is itself a mirror: GRADWISE_DATA_MIRROR (a folder,
file:///folder, or an http(s) base URL) is read instead of GitHub, e.g. for machines without
internet access, or for tests.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import BinaryIO

from gradwise.errors import DataError
from gradwise.settings import data_home

__all__ = [
    "DATASETS",
    "DataSet",
    "RemoteFile",
    "check_present",
    "fetch",
    "find",
    "get_command",
    "identify",
    "is_there",
    "missing_hint",
]

MIRROR_ENV = "GRADWISE_DATA_MIRROR"
CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set: its name in the set's folder, where it is fetched from, and
    the sha256 and size (bytes) it must have."""

    name: str
    url: str
    sha256: str
    n_bytes: int


@dataclass(frozen=True)
class DataSet:
    """A data set the examples use: its folder name, what it is, its origin and licence."""

    name: str
    title: str
    origin: str  # repository@commit
    licence: str
    files: tuple[RemoteFile, ...]

    @property
    def n_bytes(self) -> int:
        return sum(f.n_bytes for f in self.files)

    def missing(self, folder: Path) -> list[RemoteFile]:
        """The files not in `folder/<name>/` (present means: there, with the right size)."""
        here = folder / self.name
        return [f for f in self.files if not _has_size(here / f.name, f.n_bytes)]


def _github(repo: str, commit: str, files: list[tuple[str, int, str]]) -> tuple[RemoteFile, ...]:
    """Files of `repo` at `commit`: (path in the repository, bytes, sha256) each."""
    base = f"https://raw.githubusercontent.com/{repo}/{commit}"
    return tuple(
        RemoteFile(path.rsplit("/", 1)[-1], f"{base}/{path}", sha, n) for path, n, sha in files
    )


def _set(
    name: str, title: str, repo: str, commit: str, licence: str, files: list[tuple[str, int, str]]
) -> DataSet:
    return DataSet(name, title, f"github:{repo}@{commit}", licence, _github(repo, commit, files))


JB = "jbrownlee/Datasets"
UCI_CC_BY = "CC BY 4.0 (UCI Machine Learning Repository)"

DATASETS: dict[str, DataSet] = {
    d.name: d
    for d in (
        _set(
            "adult",
            "UCI Adult / Census Income: income >50K from 14 mixed columns",
            JB,
            "477f2a64890670c95d53c85e7fdede32882aaf7c",
            UCI_CC_BY + "; Kohavi & Becker 1996",
            [
                ("adult-train.csv", 3_974_305,
                 "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d"),
                ("adult-test.csv", 2_003_132,
                 "72567b94f5c1a6f8501377dd80f93892c3848ff071cf91ba47e00b0785a28074"),
                ("adult.names", 5_229,
                 "c248284c0b5de30c9e1958d6cdd168a34a654758b620e68f46aefa83fc0a576a"),
            ],
        ),
        _set(
            "ai4i2020_predictive_maintenance",
            "AI4I 2020 predictive maintenance: 10,000 machine records, 3.4% failures",
            "gabigol91/dataset",
            "38d4df9ce8b35399c3e968a7fbd694b85626d502",
            UCI_CC_BY + "; Stephan Matzka, HTW Berlin, 2020",
            [("ai4i2020.csv", 522_048,
              "7d0663a632a1a045144d504b34ab64e52efa3d55ad99d8d7c3a61b751e20c8fb")],
        ),
        _set(
            "airline_passengers",
            "International airline passengers, monthly, 1949-1960 (144 points)",
            JB,
            "7041c0cc3d65519cf5af38b3afa82087a7d80748",
            "no explicit licence: Box & Jenkins (1976), series G, via the Time Series Data "
            "Library",
            [
                ("airline-passengers.csv", 2_180,
                 "8cb51be753a718d9be5d76d7e238cc224792754676adc21faa59e954b0201621"),
                ("airline-passengers.names", 148,
                 "d195d0deb285e0c1f64244c729b40523618ba507e5ba31ca19ce0d1aadbc9460"),
            ],
        ),
        _set(
            "beijing_pm25",
            "Beijing PM2.5: hourly pollution and weather, 2010-2014 (43,824 rows)",
            JB,
            "dbda4915ca10627189cfe447961db9a486f090c3",
            UCI_CC_BY + "; Song Xi Chen, Peking University",
            [
                ("pollution.csv", 2_010_492,
                 "892e9559205d16d32623135c127a3951c12e46ea1e0b3093e107ce89a9fd60e2"),
                ("pollution.names", 1_110,
                 "45699ff87f13a3e4bf978176f3491edb1b0a6b3b50dc819a8473bedb10451be3"),
            ],
        ),
        _set(
            "german_credit",
            "Statlog German credit: 1,000 applicants, good / bad risk",
            JB,
            "f430307f22e1127f25765343df5d097fc16f113e",
            UCI_CC_BY + "; Hans Hofmann, University of Hamburg",
            [
                ("german.csv", 79_793,
                 "ec12a88b9fc14d74ba646ea0410cf7ff4533bec2eb61652f8ad76796bbfec017"),
                ("german.names", 4_679,
                 "69b92cb551111bc37098698288849c96f0fd87ce81a2e54451ff39aa1e53fe49"),
            ],
        ),
        _set(
            "mammography",
            "Mammography: 11,183 findings, 2.3% positive (a rare-event stand-in for fraud)",
            JB,
            "ae93223ff9895d5eab3e3c03d1f9bebc26e3138e",
            "no explicit licence: research data of Woods et al., IJPRAI 7(6), 1993 (also "
            "OpenML 310)",
            [
                ("mammography.csv", 827_904,
                 "7d3dea3f075f30bbdbb8980e7725684059b4fe3d0f850fadd0f635f6993d8730"),
                ("mammography.names", 385,
                 "348cefa150239f9bc8d08f164203834284e2290fe962e325e02c66b051b5dd4b"),
            ],
        ),
        _set(
            "melbourne_min_temperatures",
            "Daily minimum temperatures in Melbourne, 1981-1990 (3,650 points)",
            JB,
            "5224989c1b746b5da779ad95c4cb2c3787f57f71",
            "no explicit licence: Australian Bureau of Meteorology, via the Time Series Data "
            "Library",
            [
                ("daily-min-temperatures.csv", 67_921,
                 "8b9de63ed6789492bf497625e7f9beb96a63d367b4b0a21754006f749fa5e5da"),
                ("daily-min-temperatures.names", 142,
                 "0b7d97f84cba1f04c92560332d077e82c157267344e3c06a4474ceafc5951158"),
            ],
        ),
        _set(
            "mnist",
            "MNIST handwritten digits, the official 10,000-image test split (idx, gzip)",
            "RahulBaboota/MNIST",
            "07115411d22bb2ccfe9bc7963780bbe5cb3c8a4e",
            "CC BY-SA 3.0 (Yann LeCun and Corinna Cortes)",
            [
                ("FLAGS.data_dir/t10k-images-idx3-ubyte.gz", 1_648_877,
                 "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
                ("FLAGS.data_dir/t10k-labels-idx1-ubyte.gz", 4_542,
                 "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
            ],
        ),
        _set(
            "movie_review_polarity",
            "Movie review polarity v2.0: 2,000 reviews, positive / negative (tar.gz)",
            JB,
            "56d2812b9031b8612425f1b09b0671f509a69cee",
            "no explicit licence: Bo Pang and Lillian Lee, Cornell, for research (cite ACL 2004)",
            [("review_polarity.tar.gz", 3_127_238,
              "fc0dccc2671af5db3c5d8f81f77a1ebfec953ecdd422334062df61ede36b2179")],
        ),
        _set(
            "sms_spam",
            "SMS Spam Collection v.1: 5,574 messages, ham / spam",
            "maze-runnar/SMS-spam-detection",
            "bf609524a734e096bfe66d25541f91c25ffe598a",
            "CC BY 4.0 (UCI); Almeida & Gomez Hidalgo, free with a citation (DocEng 2011)",
            [
                ("smsspamcollection/SMSSpamCollection", 477_907,
                 "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d"),
                ("smsspamcollection/readme", 5_868,
                 "8753cd2d3cab68f80c8257851b8c2037778c267f55accb6fd1b5a2e32d36a84e"),
            ],
        ),
        _set(
            "tinyshakespeare",
            "Tiny Shakespeare: 1.1 M characters of plays, for character language models",
            "karpathy/char-rnn",
            "370cbcd448eb7daf32f21a6be560b70e0b33c4e3",
            "public domain (the text); MIT (the repository)",
            [("data/tinyshakespeare/input.txt", 1_115_394,
              "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed")],
        ),
    )
}  # fmt: skip


def find(name: str) -> DataSet:
    """The data set called `name`.

    Raises:
        DataError: no such set (with the name meant, and the list).
    """
    if name in DATASETS:
        return DATASETS[name]
    close = get_close_matches(name, list(DATASETS), n=1)
    meant = f"did you mean {close[0]}? " if close else ""
    raise DataError(
        f"No example data set {name!r}; {meant}the sets: {', '.join(DATASETS)} "
        "(gradwise datasets lists them)."
    )


def identify(path: Path) -> tuple[DataSet, Path] | None:
    """The data set a data file (or idx prefix) belongs to, and the folder that holds the
    set's folder; None when the path is not one of the registry's files."""
    folder = path.parent
    data_set = DATASETS.get(folder.name)
    if data_set is None:
        return None
    prefix = path.name + "-"  # idx:PREFIX names PREFIX-images-idx3-ubyte.gz and -labels-
    if any(f.name == path.name or f.name.startswith(prefix) for f in data_set.files):
        return data_set, folder.parent
    return None


def missing_hint(path: Path) -> str | None:
    """For a data path that is not there: the command that fetches it, when it is one of the
    example data sets (None otherwise)."""
    found = identify(path)
    if found is None:
        return None
    data_set, folder = found
    command = get_command(data_set.name, folder)
    return f"it is the example data set {data_set.name}: `{command}` fetches it"


def check_present(kind: str, location: str) -> None:
    """Raise a DataError naming `gradwise datasets get NAME` when `location` (of a data.source
    of this kind) is one of the example data sets' files and is not there; other missing
    files are left to the source's reader, which says so in its own words."""
    if kind in ("builtin", "memory") or is_there(kind, Path(location)):
        return
    path = Path(location)
    hint = missing_hint(path)
    if hint is not None:
        raise DataError(f"Data file {path} not found; {hint}.")


def is_there(kind: str, path: Path) -> bool:
    """Whether a data.source path of this kind exists (for idx: files PREFIX-*)."""
    return path.exists() or (kind == "idx" and any(path.parent.glob(path.name + "-*")))


def get_command(name: str, folder: Path) -> str:
    """`gradwise datasets get NAME`, with `--to FOLDER` unless FOLDER is the data home."""
    to = "" if _same(folder, data_home()) else f" --to {folder}"
    return f"gradwise datasets get {name}{to}"


def fetch(
    data_set: DataSet,
    to: Path,
    mirror: str | None = None,
    on_file: Callable[[RemoteFile, str], None] | None = None,
) -> Path:
    """Fetch every file of `data_set` into `to/<name>/`, verifying each one's sha256.

    A file already there with the right sha256 is kept; one with another is an error (it is
    not ours to overwrite). Each file is written to a temporary name beside its place and
    renamed once verified, so an interrupted fetch leaves no half file.

    Args:
        mirror: read `<mirror>/<name>/<file>` instead of the public URLs: a folder,
            file:///folder or an http(s) base URL (default: $GRADWISE_DATA_MIRROR, if set).
        on_file: called with each file and what happened ("kept", "fetched").

    Returns:
        The set's folder, `to/<name>`.

    Raises:
        DataError: a file cannot be fetched, or its sha256 or size is not the pinned one.
    """
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    here = to / data_set.name
    here.mkdir(parents=True, exist_ok=True)
    for f in data_set.files:
        dest = here / f.name
        if dest.exists():
            found = _sha256_file(dest)
            if found != f.sha256:
                raise DataError(
                    f"{dest} is there but is not {data_set.name}'s {f.name} (sha256 {found}, "
                    f"expected {f.sha256}); move it away, then run the command again."
                )
            if on_file is not None:
                on_file(f, "kept")
            continue
        source = _location(f, data_set, mirror)
        _download(source, dest, f)
        if on_file is not None:
            on_file(f, "fetched")
    return here


def _location(f: RemoteFile, data_set: DataSet, mirror: str | None) -> str:
    if not mirror:
        return f.url
    return mirror.rstrip("/") + f"/{data_set.name}/{f.name}"


def _download(source: str, dest: Path, f: RemoteFile) -> None:
    partial = dest.with_name(f".{dest.name}.part")
    digest = hashlib.sha256()
    try:
        try:
            with _open(source) as src, partial.open("wb") as out:
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())  # on disk before the rename makes it the file
        except FileNotFoundError:
            raise DataError(f"Cannot fetch {source}: no such file; check {MIRROR_ENV}.") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DataError(
                f"Cannot fetch {source}: {reason}. Check the network, or set {MIRROR_ENV} to a "
                "folder (or URL) holding NAME/FILE copies."
            ) from None
        size = partial.stat().st_size
        if digest.hexdigest() != f.sha256 or size != f.n_bytes:
            raise DataError(
                f"{source} is not the pinned {f.name}: sha256 {digest.hexdigest()} and "
                f"{size:,} bytes, expected {f.sha256} and {f.n_bytes:,}; nothing was kept. "
                f"The source may have changed; check it (or {MIRROR_ENV})."
            )
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def _open(source: str) -> Iterator[BinaryIO]:
    """A readable binary stream of a URL (http, https, file) or a local path."""
    if "://" not in source:
        with open(source, "rb") as fh:
            yield fh
        return
    with urllib.request.urlopen(source, timeout=60) as response:
        yield response


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _has_size(path: Path, n_bytes: int) -> bool:
    return path.is_file() and path.stat().st_size == n_bytes


def _same(a: Path, b: Path) -> bool:
    return _absolute(a) == _absolute(b)


def _absolute(path: Path) -> str:
    return os.path.normpath(path.expanduser().absolute())
