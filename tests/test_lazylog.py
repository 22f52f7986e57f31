"""cove.lazylog: loggers that import logging only when something is logged.

Each case runs in a fresh interpreter (whether logging is imported is the point).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)


def _py(code: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return r


def test_debug_and_info_need_no_logging_and_warnings_get_the_pending_config() -> None:
    r = _py("import sys\n"
            "had = 'logging' in sys.modules\n"
            "from cove.lazylog import configure, getLogger\n"
            "configure(stream=sys.stderr, level='WARNING', format='cove: %(message)s')\n"
            "log = getLogger('cove.test')\n"
            "log.debug('dropped %s', 1); log.info('dropped')\n"
            "print(had or 'logging' in sys.modules)\n"
            "log.warning('shown %s', 2)\n"
            "print('logging' in sys.modules)\n"
            "log.info('still dropped')\n")
    assert r.stdout.split() == ["False", "True"]
    assert r.stderr == "cove: shown 2\n"


def test_a_pending_debug_level_lets_debug_through() -> None:
    r = _py("import sys\n"
            "from cove.lazylog import configure, getLogger\n"
            "configure(stream=sys.stderr, level='DEBUG', format='%(levelname)s %(message)s')\n"
            "getLogger('x').debug('d')\n")
    assert r.stderr == "DEBUG d\n"


def test_configure_now_and_with_logging_already_imported() -> None:
    r = _py("import sys\n"
            "from cove.lazylog import configure\n"
            "configure(now=True, stream=sys.stdout, format='%(message)s')\n"
            "import logging\n"
            "logging.getLogger('x').warning('w')\n")
    assert r.stdout == "w\n"
    r = _py("import logging, sys\n"
            "from cove.lazylog import configure, getLogger\n"
            "configure(stream=sys.stdout, level='INFO', format='%(message)s')\n"
            "getLogger('x').info('i')\n")
    assert r.stdout == "i\n"


def test_records_name_the_callers_line() -> None:
    r = _py("import logging, sys\n"
            "logging.basicConfig(stream=sys.stdout, level=logging.DEBUG,\n"
            "                    format='%(name)s %(funcName)s %(message)s')\n"
            "from cove.lazylog import getLogger\n"
            "def caller():\n"
            "    log = getLogger('cove.t')\n"
            "    log.debug('a'); log.info('b'); log.warning('c')\n"
            "    try:\n"
            "        1 / 0\n"
            "    except ZeroDivisionError:\n"
            "        log.exception('d')\n"
            "caller()\n")
    lines = r.stdout.splitlines()
    assert lines[:4] == ["cove.t caller a", "cove.t caller b", "cove.t caller c",
                         "cove.t caller d"]
    assert "ZeroDivisionError" in r.stdout
