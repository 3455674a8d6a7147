"""The hint: exact reference template, banker's rounding, line/token cuts, levels."""

import pytest

from ghpo.shared.algorithm.hints import (
    HINT_SEPARATOR,
    cut_solution,
    has_solution,
    hf_codec,
    hinted_problem,
    hinted_problem_at_level,
    level_for_ratio,
    ratio_for_level,
)

LADDER = (0.25, 0.5, 0.75)


def test_hint_string_is_the_reference_template_exactly():
    problem = "What is 2 + 3?"
    solution = "We add: 2 + 3 = 5. So \\boxed{5}."  # 33 characters; 33 * 0.5 = 16.5 -> 16
    expected = (
        "What is 2 + 3?\n The following text is the beginning part of the answer, which you can refer to for "
        "solving the problem:\nWe add: 2 + 3 = "
    )
    assert hinted_problem(problem, solution, 0.5) == expected


def test_separator_is_the_reference_string():
    assert HINT_SEPARATOR == (
        "\n The following text is the beginning part of the answer, which you can refer to for solving the "
        "problem:\n"
    )


@pytest.mark.parametrize(
    ("length", "ratio", "kept"),
    [
        (10, 0.25, 2),  # 2.5 rounds half to even -> 2 (not 3)
        (14, 0.25, 4),  # 3.5 rounds half to even -> 4
        (6, 0.75, 4),  # 4.5 -> 4
        (10, 0.75, 8),  # 7.5 -> 8
        (7, 0.5, 4),  # 3.5 -> 4
        (9, 0.5, 4),  # 4.5 -> 4
        (0, 0.5, 0),
    ],
)
def test_char_cut_uses_python_bankers_rounding(length, ratio, kept):
    solution = "abcdefghijklmnopqrstuvwxyz"[:length]
    assert cut_solution(solution, ratio) == solution[:kept]
    assert len(cut_solution(solution, ratio)) == round(length * ratio)


def test_char_cut_may_split_a_word_like_the_reference():
    assert cut_solution("alpha beta", 0.25) == "al"


def test_line_cut_keeps_whole_lines_within_the_char_cut():
    solution = "line one\nline two\nline three\nend"  # 32 chars; 0.5 -> 16 chars: "line one\nline t"
    assert cut_solution(solution, 0.5, cut="line") == "line one"
    assert cut_solution(solution, 0.75, cut="line") == "line one\nline two"  # 24 chars ends at index 17 '\n'


def test_line_cut_at_an_exact_line_break():
    solution = "ab\ncd\nef"  # 8 * 0.25 = 2: the break at index 2 is just past the cut and still counts
    assert cut_solution(solution, 0.25, cut="line") == "ab"


def test_line_cut_falls_back_to_char_cut_when_first_line_is_too_long():
    solution = "a single long line of worked solution"
    assert cut_solution(solution, 0.5, cut="line") == cut_solution(solution, 0.5)


def test_token_cut_with_a_piece_callable_keeps_round_n_tokens():
    solution = "x = 1 + 2 = 3"
    pieces = lambda text: text.split(" ")  # noqa: E731 - pieces without the spaces do not rebuild the text
    with pytest.raises(ValueError, match="concatenation"):
        cut_solution(solution, 0.5, cut="token", tokenizer=pieces)

    def spaced(text):
        words = text.split(" ")
        return [word + " " for word in words[:-1]] + [words[-1]]

    # 7 pieces * 0.5 = 3.5 -> 4 pieces
    assert cut_solution(solution, 0.5, cut="token", tokenizer=spaced) == "x = 1 + "


class CharCodec:
    """A codec whose tokens are characters, to check the encode/decode path."""

    def encode(self, text):
        return [ord(char) for char in text]

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


def test_token_cut_with_an_encode_decode_codec():
    assert cut_solution("abcdefghij", 0.25, cut="token", tokenizer=CharCodec()) == "ab"  # 2.5 -> 2


def test_token_cut_without_tokenizer_is_an_error():
    with pytest.raises(ValueError, match="needs a tokenizer"):
        cut_solution("abc", 0.5, cut="token")


def test_hf_codec_adds_no_special_tokens():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    word_level = Tokenizer(models.WordLevel({"<s>": 0, "a": 1, "b": 2, "c": 3, "d": 4}, unk_token="<s>"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_level, bos_token="<s>", unk_token="<s>")
    codec = hf_codec(tokenizer)
    assert list(codec.encode("a b c d")) == [1, 2, 3, 4]
    assert cut_solution("a b c d", 0.5, cut="token", tokenizer=codec) == "a b"


def test_unknown_cut_is_rejected():
    with pytest.raises(ValueError, match=r"char \| token \| line"):
        cut_solution("abc", 0.5, cut="sentence")


def test_ratio_outside_unit_interval_is_rejected():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cut_solution("abc", 1.5)


def test_level_zero_is_no_hint_and_levels_follow_the_ladder():
    assert ratio_for_level(0, LADDER) == 0.0
    assert [ratio_for_level(k, LADDER) for k in (1, 2, 3)] == [0.25, 0.5, 0.75]
    assert [level_for_ratio(r, LADDER) for r in (0.0, 0.25, 0.5, 0.75)] == [0, 1, 2, 3]


def test_level_past_the_ladder_is_rejected():
    with pytest.raises(ValueError, match=r"0\.\.3"):
        ratio_for_level(4, LADDER)
    with pytest.raises(ValueError, match="not on the ladder"):
        level_for_ratio(1.0, LADDER)


def test_level_zero_returns_the_problem_unchanged_even_without_solution():
    assert hinted_problem_at_level("P", None, 0, LADDER) == "P"


def test_prompt_without_solution_is_never_hinted():
    assert not has_solution(None)
    assert not has_solution("  \n")
    with pytest.raises(ValueError, match="no worked solution"):
        hinted_problem("P", None, 0.25)
    with pytest.raises(ValueError, match="no worked solution"):
        hinted_problem_at_level("P", "", 1, LADDER)


def test_hint_by_level_uses_the_ladder_ratio():
    solution = "0123456789abcdef"  # 16 chars
    assert hinted_problem_at_level("P", solution, 2, LADDER) == "P" + HINT_SEPARATOR + "01234567"
    assert (
        hinted_problem_at_level("P", solution, 3, LADDER, cut="char") == "P" + HINT_SEPARATOR + solution[:12]
    )
