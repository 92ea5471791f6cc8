"""`newsbot chat` in a real pseudo-terminal: prompt-toolkit line editing, a follow-up, Ctrl-D."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pexpect
import pytest

from tests.conftest import QATAR_QUESTION, SAMPLES

PROMPT = "you>"  # prompt-toolkit draws the space as a cursor move
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def plain(text: str) -> str:
    return ANSI.sub("", text)


@pytest.mark.slow
def test_chat_in_a_terminal_answers_a_follow_up_and_leaves_on_ctrl_d(make_bot, tmp_path: Path):
    data_dir = tmp_path / "data"
    assert make_bot(data_dir=data_dir).ingest([str(SAMPLES)]).failed == 0

    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TERM": "xterm-256color",
        # pexpect's terminal answers no cursor-position requests; don't wait for one.
        "PROMPT_TOOLKIT_NO_CPR": "1",
    }
    child = pexpect.spawn(
        str(Path(sys.executable).parent / "newsbot"),
        ["chat", "--data-dir", str(data_dir)],
        env=env,
        encoding="utf-8",
        timeout=60,
        dimensions=(50, 120),
    )
    try:
        child.expect("1 article indexed")
        child.expect_exact(PROMPT)

        child.sendline(QATAR_QUESTION)
        child.expect_exact("Sources:")
        child.expect_exact(PROMPT)
        first = plain(child.before)
        assert "[1]" in first and "2024-02-07" in first

        # Ctrl-C at the prompt clears the line; the session goes on.
        child.send("half a question")
        child.sendintr()
        child.expect_exact(PROMPT)

        # Egypt says nothing in the sample, so a refusal with its closest evidence is a fair
        # answer too; either way the follow-up is answered with citations, not an error.
        child.sendline("What about Egypt?")
        child.expect(["Sources:", "Closest evidence"])
        child.expect_exact(PROMPT)
        assert "[1]" in plain(child.before)

        child.sendline("/sources")
        child.expect_exact("Passages behind the last answer:")
        child.expect_exact(PROMPT)
        assert "[1]" in plain(child.before)

        child.sendeof()  # Ctrl-D
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, child.before

    history = (data_dir / "chat_history").read_text(encoding="utf-8")
    assert QATAR_QUESTION in history and "What about Egypt?" in history
