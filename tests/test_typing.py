"""Issue 13: the public API is typed, and the types bite.

mypy --strict (setup.cfg's [mypy]) checks tests/typing/good.py, a script that uses the
API as the README does, and finds nothing; and tests/typing/bad.py, where every line
marked ``# E: code`` must draw exactly that error and no other line any. good.py also
runs, so that what type-checks is what works. The README's API tables must agree with
the functions' signatures.
"""

import ast
import inspect
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import bitloot_lite as bl
from bitloot_lite import _typing

mypy_api = pytest.importorskip("mypy.api")

ROOT = Path(__file__).resolve().parent.parent
TYPING = ROOT / "tests" / "typing"
README = ROOT / "README.md"

_ERROR = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): error: (?P<text>.*)  \[(?P<code>[\w-]+)\]$")


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory):
    """{file name: [(line, code, text), ...]} of one mypy run on both scripts."""
    cache = tmp_path_factory.mktemp("mypy-cache")
    here = os.getcwd()
    os.chdir(ROOT)  # mypy finds bitloot_lite in the clone, whatever the install
    try:
        stdout, stderr, _status = mypy_api.run([
            "--config-file", str(ROOT / "setup.cfg"), "--cache-dir", str(cache),
            "--no-error-summary", "--hide-error-context", "--no-pretty",
            str(TYPING / "good.py"), str(TYPING / "bad.py"),
        ])
    finally:
        os.chdir(here)
    assert not stderr, stderr
    errors = {"good.py": [], "bad.py": []}
    for line in stdout.splitlines():
        match = _ERROR.match(line)
        if match:
            errors.setdefault(Path(match["path"]).name, []).append(
                (int(match["line"]), match["code"], match["text"]))
        else:
            assert ": note: " in line, line  # nothing but errors and their notes
    assert set(errors) == {"good.py", "bad.py"}, errors  # none in bitloot_lite itself
    return errors


def test_the_typed_script_type_checks(mypy_errors):
    assert mypy_errors["good.py"] == []


def _expected(path):
    """{line: sorted error codes} from the ``# E: code ...`` markers."""
    expected = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        marker = re.search(r"# E: ([\w -]+)$", line)
        if marker:
            expected[number] = sorted(marker[1].split())
    return expected


def test_every_misuse_is_reported_at_its_line(mypy_errors):
    expected = _expected(TYPING / "bad.py")
    assert len(expected) >= 20  # the markers were read
    reported = {}
    for line, code, _text in mypy_errors["bad.py"]:
        reported.setdefault(line, []).append(code)
    assert {line: sorted(codes) for line, codes in reported.items()} == expected


def test_the_misuses_named_in_the_issue(mypy_errors):
    """A wrong argument type, a status string that is no status, a missing argument."""
    source = (TYPING / "bad.py").read_text().splitlines()
    texts = {}
    for line, _code, text in mypy_errors["bad.py"]:
        texts.setdefault(source[line - 1].strip().split("  # E:")[0], []).append(text)
    assert texts["bl.add_keys(item, 5)"] == [
        'Argument 2 to "add_keys" has incompatible type "int"; expected "Iterable[str]"']
    assert [t.split(";")[0] for t in texts['bl.create_order(["a@b.c"], "x")']] == [
        'Argument 1 to "create_order" has incompatible type "list[str]"',
        'Argument 2 to "create_order" has incompatible type "str"']
    assert texts['bl.set_status(order, "shipped")'][0].startswith(
        'Argument 2 to "set_status" has incompatible type "Literal[\'shipped\']"')
    assert texts['bl.record_payment(order, "np-1")'] == [
        'Missing positional argument "status" in call to "record_payment"']


def test_the_typed_script_runs(tmp_path):
    """What type-checks is what works: good.py, run on a fresh SQLite file."""
    url = f"sqlite:///{tmp_path / 'good.db'}"
    done = subprocess.run([sys.executable, str(TYPING / "good.py"), url], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "not yet: 1 key(s) missing" in done.stdout


@pytest.mark.parametrize(("alias", "enum"), [
    (_typing.OrderStatusName, bl.OrderStatus), (_typing.PaymentStatusName, bl.PaymentStatus)])
def test_the_status_names_are_the_enums_values(alias, enum):
    assert sorted(typing.get_args(alias)) == sorted(member.value for member in enum)


def test_payment_fields_are_the_ones_record_payment_takes():
    from bitloot_lite import services

    assert set(_typing.PaymentFields.__annotations__) == set(services._PAYMENT_CHECKS)


# --------------------------------------------------------------------------- the README


def _documented(signature):
    """The parameters of a signature as the README writes it (``f(a, b=None, *, c)``)."""
    tree = ast.parse(f"def {signature}: pass").body[0]
    args = tree.args
    plain = args.posonlyargs + args.args
    defaults = [None] * (len(plain) - len(args.defaults)) + args.defaults
    params = [(a.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD, d)
              for a, d in zip(plain, defaults, strict=True)]
    if args.vararg:
        params.append((args.vararg.arg, inspect.Parameter.VAR_POSITIONAL, None))
    params += [(a.arg, inspect.Parameter.KEYWORD_ONLY, d)
               for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    if args.kwarg:
        params.append((args.kwarg.arg, inspect.Parameter.VAR_KEYWORD, None))
    return tree.name, params


def _service_table():
    """The first column of the README's service-API table."""
    text = README.read_text()
    table = text[text.index("| function | what it does |"):]
    table = table[:table.index("\n\n")]
    return re.findall(r"^\| `([a-z_]+\(.*?\))` \|", table, re.M)


def test_the_service_table_lists_every_service_function():
    from bitloot_lite import services

    documented = {_documented(row)[0] for row in _service_table()}
    public = {name for name in bl.__all__ if getattr(bl, name).__module__ == services.__name__}
    assert documented == public


@pytest.mark.parametrize("row", _service_table())
def test_the_service_table_agrees_with_the_signatures(row):
    """Names, kinds and order exactly; a default where the README gives one (a
    positional parameter documented without one has none; keyword-only ones may
    leave theirs out)."""
    name, documented = _documented(row)
    actual = list(inspect.signature(getattr(bl, name)).parameters.values())
    assert [(p, kind) for p, kind, _ in documented] == [(a.name, a.kind) for a in actual]
    for (_, kind, default), parameter in zip(documented, actual, strict=True):
        if default is not None:
            assert ast.literal_eval(default) == parameter.default, (name, parameter.name)
        elif kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            assert parameter.default is inspect.Parameter.empty, (name, parameter.name)


def _error_signatures():
    text = README.read_text()
    section = text[text.index("### Errors"):]
    section = section[:section.index("\n#")]
    return [" ".join(found.split())
            for found in re.findall(r"`([A-Z][A-Za-z]+\([a-z_,\s]+\))`", section)]


@pytest.mark.parametrize("documented", _error_signatures())
def test_the_errors_paragraph_agrees_with_the_classes(documented):
    """``ValidationError(field, value, reason)``: the constructor's leading parameters
    (any left out have defaults), each kept as the attribute of that name."""
    from bitloot_lite import errors

    name, params = _documented(documented)
    cls = getattr(errors, name)
    actual = list(inspect.signature(cls).parameters.values())
    assert [p for p, _, _ in params] == [a.name for a in actual[:len(params)]]
    assert all(a.default is not inspect.Parameter.empty for a in actual[len(params):])
    init = inspect.getsource(cls.__init__)
    for param, _, _ in params:
        assert f"self.{param} = " in init or f"super().__init__({param}" in init, param


def test_the_errors_paragraph_was_read():
    assert len(_error_signatures()) >= 12
