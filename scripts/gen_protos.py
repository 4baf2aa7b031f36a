"""Regenerate the Python code for every .proto under protos/, or check it for drift.

Usage::

    python scripts/gen_protos.py          # write zhida/<area>/v1/*_pb2*.py{,i}
    python scripts/gen_protos.py --check  # exit 1 if the checked-in code differs

The output is deterministic for a given grpcio-tools and mypy-protobuf version,
which pyproject.toml pins through the ``dev`` extra.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) into out_dir; return the generated files."""
    import grpc_tools

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    bin_dir = Path(sys.executable).parent
    args = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *(str(p.relative_to(PROTO_ROOT)) for p in proto_files()),
    ]
    subprocess.run(args, check=True, cwd=PROTO_ROOT)
    return sorted(p for p in out_dir.rglob("*") if p.name.endswith(GENERATED_SUFFIXES))


def checked_in() -> list[Path]:
    return sorted(p for p in (ROOT / "zhida").rglob("*") if p.name.endswith(GENERATED_SUFFIXES))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail on drift, write nothing")
    check = parser.parse_args().check
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        fresh = {p.relative_to(out): p for p in generate(out)}
        current = {p.relative_to(ROOT): p for p in checked_in()}
        if check:
            drift = sorted(
                str(rel)
                for rel in fresh.keys() | current.keys()
                if rel not in fresh
                or rel not in current
                or not filecmp.cmp(fresh[rel], current[rel], shallow=False)
            )
            if drift:
                print("generated code drifted from protos/; run `make proto`:", file=sys.stderr)
                for name in drift:
                    print(f"  {name}", file=sys.stderr)
                return 1
            print(f"generated code matches protos/ ({len(fresh)} files)")
            return 0
        for rel in current.keys() - fresh.keys():
            current[rel].unlink()
        for rel, src in fresh.items():
            dest = ROOT / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            for pkg in (dest.parent, dest.parent.parent):
                (pkg / "__init__.py").touch()
        print(f"wrote {len(fresh)} generated files")
        return 0


if __name__ == "__main__":
    sys.exit(main())
