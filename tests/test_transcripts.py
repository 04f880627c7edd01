"""LibriSpeech chapter transcripts (harness/corpus/transcripts.py): the one reader and writer."""
import pytest

from harness.corpus.transcripts import (TranscriptError, chapter_transcript_path, read_chapter_transcripts,
                                        write_chapter_transcripts)


def test_round_trip_sorted_and_whitespace_collapsed(tmp_path):
    p = tmp_path / "19-198.trans.txt"
    write_chapter_transcripts(p, [("19-198-0002", "B  C"), ("19-198-0001", "A")])
    assert p.read_text() == "19-198-0001 A\n19-198-0002 B  C\n"
    assert read_chapter_transcripts(p) == {"19-198-0001": "A", "19-198-0002": "B C"}
    assert chapter_transcript_path(tmp_path / "19-198-0002.flac") == p


@pytest.mark.parametrize("line", ["19-198-0001", "19198 HELLO", "x-y-z HELLO"])
def test_a_malformed_line_names_the_file_and_line(tmp_path, line):
    p = tmp_path / "19-198.trans.txt"
    p.write_text(f"19-198-0000 OK\n\n{line}\n")
    with pytest.raises(TranscriptError, match=rf"{p.name}:3: expected 'SPK-CHAP-NNNN TRANSCRIPT'"):
        read_chapter_transcripts(p)
