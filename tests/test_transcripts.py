"""Chapter and phone transcripts (harness/corpus/transcripts.py): the one reader and writer of each."""
import pytest

from harness.corpus.transcripts import (TranscriptError, chapter_transcript_path, read_chapter_transcripts,
                                        read_phone_transcripts, write_chapter_transcripts, write_phone_transcripts)


def test_round_trip_sorted_and_whitespace_collapsed(tmp_path):
    p = tmp_path / "19-198.trans.txt"
    write_chapter_transcripts(p, [("19-198-0002", "B  C"), ("19-198-0001", "A")])
    assert p.read_text() == "19-198-0001 A\n19-198-0002 B  C\n"
    assert read_chapter_transcripts(p) == {"19-198-0001": "A", "19-198-0002": "B C"}
    assert chapter_transcript_path(tmp_path / "19-198-0002.flac") == p


@pytest.mark.parametrize("reader, expected", [(read_chapter_transcripts, "TRANSCRIPT"),
                                              (read_phone_transcripts, "PHONE PHONE \\.\\.\\.")])
@pytest.mark.parametrize("line", ["19-198-0001", "19198 HELLO", "x-y-z HELLO", "19-198-0001-x ah"])
def test_a_malformed_line_names_the_file_and_line(tmp_path, reader, expected, line):
    p = tmp_path / "19-198.trans.txt"
    p.write_text(f"19-198-0000 OK\n\n{line}\n")
    with pytest.raises(TranscriptError, match=rf"{p.name}:3: expected 'SPK-CHAP-NNNN {expected}'"):
        reader(p)


def test_phone_transcripts_round_trip_sorted(tmp_path):
    p = tmp_path / "phones" / "train-clean-100.txt"
    p.parent.mkdir()
    write_phone_transcripts(p, [("19-198-0002", ["b", "iy"]), ("19-198-0001", ["ah"])])
    assert p.read_text() == "19-198-0001 ah\n19-198-0002 b iy\n"
    assert read_phone_transcripts(p) == {"19-198-0001": ["ah"], "19-198-0002": ["b", "iy"]}


def test_pr_chance_reads_phone_transcripts_and_reports_a_bad_line(tmp_path):
    from types import SimpleNamespace

    from harness.superb.chance import chance_for
    d = tmp_path / "phones"
    d.mkdir()
    write_phone_transcripts(d / "test-clean.txt", [("1-2-0000", ["a", "b"]), ("1-2-0001", ["a"])])
    lay = SimpleNamespace(phone_transcripts_dir=d)
    ch = chance_for("pr", lay)["value"]
    assert ch.n_test == 2 and ch.value is not None
    (d / "test-clean.txt").write_text("1-2-0000 a b\nbroken\n")
    ch = chance_for("pr", lay)["value"]
    assert ch.value is None and "test-clean.txt:2" in ch.kind
