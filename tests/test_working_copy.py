"""scripts/open-lab.sh opens working copies of the notebooks, so a session's outputs never
leave the repository modified nor a record's provenance saying "(uncommitted changes)"."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nbformat

from lab.notebook.working_copy import main, prepare
from lab.records.environment import git_state

ROOT = Path(__file__).resolve().parent.parent


def _notebook(path: Path, text: str) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_code_cell(text))
    nbformat.write(notebook, path)


def _run_with_outputs(path: Path) -> None:
    """What JupyterLab's autosave does to a notebook a reader ran."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        cell.execution_count = 1
        cell.outputs = [nbformat.v4.new_output("stream", text="1,200 requests\n")]
    nbformat.write(notebook, path)


def _git(root: Path, *arguments: str) -> None:
    subprocess.run(["git", "-C", str(root), *arguments], check=True, capture_output=True)


def test_copies_are_made_once_and_keep_the_readers_outputs(tmp_path):
    shipped, copies = tmp_path / "notebooks", tmp_path / "my-notebooks"
    shipped.mkdir()
    _notebook(shipped / "01-a.ipynb", "print(1)")
    assert prepare(shipped, copies) == [f"copied {shipped / '01-a.ipynb'} to {copies / '01-a.ipynb'}"]
    _run_with_outputs(copies / "01-a.ipynb")
    assert prepare(shipped, copies) == []  # nothing new: the copy and its outputs stay
    assert nbformat.read(copies / "01-a.ipynb", as_version=4).cells[0].outputs

    _notebook(shipped / "01-a.ipynb", "print(2)")  # a git pull changed the shipped one
    _notebook(shipped / "02-b.ipynb", "print(3)")  # and brought a new one
    lines = prepare(shipped, copies)
    assert lines[0].startswith(f"{shipped / '01-a.ipynb'} changed since {copies / '01-a.ipynb'}")
    assert "rename or delete your copy" in lines[0]
    assert lines[1] == f"copied {shipped / '02-b.ipynb'} to {copies / '02-b.ipynb'}"
    copy = nbformat.read(copies / "01-a.ipynb", as_version=4)
    assert copy.cells[0].source == "print(1)" and copy.cells[0].outputs  # the reader's work, kept
    assert not list(copies.glob(".*"))  # no temporary file left behind


def test_running_a_copy_keeps_the_checkout_clean_and_a_record_says_so(tmp_path):
    repository = tmp_path / "lab"
    (repository / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / ".gitignore", repository / ".gitignore")
    _notebook(repository / "notebooks" / "01-quickstart.ipynb", "import lab")
    _git(repository, "init", "-q")
    _git(repository, "add", ".")
    _git(repository, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "notebooks")
    assert main([str(repository / "notebooks"), str(repository / "my-notebooks")]) == 0

    _run_with_outputs(repository / "my-notebooks" / "01-quickstart.ipynb")
    assert git_state(repository)[1] is False  # what a record's environment says: committed
    status = subprocess.run(["git", "-C", str(repository), "status", "--porcelain"],
                            capture_output=True, text=True, check=True).stdout
    assert status == ""  # not even an untracked folder for the reader to wonder about

    _run_with_outputs(repository / "notebooks" / "01-quickstart.ipynb")  # what open-lab.sh avoids
    assert git_state(repository)[1] is True


def test_open_lab_opens_the_copies_not_the_shipped_notebooks():
    script = (ROOT / "scripts" / "open-lab.sh").read_text()
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / "open-lab.sh")], check=True)
    assert "-m lab.notebook.working_copy notebooks \"$copies\"" in script
    assert 'cd "$copies"' in script and "cd notebooks" not in script
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "my-notebooks/x.ipynb"])
    assert ignored.returncode == 0, "my-notebooks/ must be git-ignored"


def test_a_module_a_notebook_imports_is_copied_beside_the_copies_once(tmp_path):
    """Notebook 16 imports ``your_app`` from its own folder: opened from the copies, it must
    find it there; the reader's edits to it stay theirs."""
    shipped, copies = tmp_path / "notebooks", tmp_path / "copies"
    shipped.mkdir()
    _notebook(shipped / "16-app.ipynb", "import your_app")
    (shipped / "your_app.py").write_text("app = 'shipped'\n")
    assert prepare(shipped, copies) == [f"copied {shipped / '16-app.ipynb'} to {copies / '16-app.ipynb'}",
                                        f"copied {shipped / 'your_app.py'} to {copies / 'your_app.py'}"]
    (copies / "your_app.py").write_text("app = 'mine'\n")
    assert prepare(shipped, copies) == []
    assert (copies / "your_app.py").read_text() == "app = 'mine'\n"


def test_every_module_the_shipped_notebooks_import_from_their_folder_is_copied(tmp_path):
    shipped = Path(__file__).resolve().parent.parent / "notebooks"
    prepare(shipped, tmp_path)
    assert (tmp_path / "your_app.py").exists()
