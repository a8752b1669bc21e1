"""Each cleaning step on small inputs, and idempotence of the whole chain."""

import pytest

from farense.cleaning import (
    PAGE_BREAK,
    CleaningOptions,
    clean_prose,
    join_hyphenation,
    join_wrapped_lines,
    normalize_line_endings,
    normalize_whitespace,
    remove_control_chars,
    remove_emoji,
    remove_page_numbers,
    remove_running_headers,
    remove_soft_hyphens,
    remove_stray_bullets,
    to_nfc,
)
from farense.markup import html_to_text, markdown_to_text
from farense.mojibake import fix_mojibake

OPTIONS = CleaningOptions()


def test_line_endings():
    assert normalize_line_endings("a\r\nb\rc\fd") == ("a\nb\nc\nd", 3)


@pytest.mark.parametrize(
    "damaged, repaired",
    [
        ("A Ã©poca de 1994/95", "A época de 1994/95"),  # cp1252 mojibake
        ("O Est√°dio de S√£o Lu√≠s", "O Estádio de São Luís"),  # mac_roman mojibake
        ("Já é época: a associa√ß√£o e a Ã©poca", "Já é época: a associação e a época"),  # mixed with correct accents
        ("5.¬∫ lugar e 1.Âª divisão", "5.º lugar e 1.ª divisão"),
        ("disse â€œolÃ¡â€\x9d", "disse “olá”"),
    ],
)
def test_mojibake_is_repaired(damaged, repaired):
    assert fix_mojibake(damaged) == (repaired, 1)


@pytest.mark.parametrize("text", ["«É um clube» – disse", "Ãgua é água", "√2 é irracional", "Leões de Faro, 5.º lugar"])
def test_correct_text_is_not_touched_by_mojibake_repair(text):
    assert fix_mojibake(text) == (text, 0)


def test_soft_hyphens_and_control_chars():
    assert remove_soft_hyphens("adep\u00adtos e associa\u00ad\ntiva") == ("adeptos e associativa", 2)
    assert remove_control_chars("Fa\x07ro\x1b e\u200b Olhão\x7f\n\tok") == ("Faro e Olhão\n\tok", 4)


def test_page_furniture():
    text = "fim da página\n12\n- 13 -\nPág. 14\n[15]\n1910\nHISTÓRIA\ntexto\nHISTÓRIA\nmais\nHISTÓRIA\n"
    text, pages = remove_page_numbers(text)
    assert pages == 4 and "1910" in text  # a year on its own line is not a page number
    text, headers = remove_running_headers(text, 3)
    assert headers == 3 and "HISTÓRIA" not in text
    assert remove_stray_bullets("•\n• item\n▪ outro\nfim") == ("\nitem\noutro\nfim", 3)


def test_a_hyphen_read_as_a_bullet_is_joined_as_a_hyphen():
    # scanned books: "associa• tiva" (the break became a space) and "associa•\ntiva"
    assert join_hyphenation("a vida associa• tiva animava") == ("a vida associativa\nanimava", 1)
    assert join_hyphenation("a vida associa•\ntiva") == ("a vida associativa", 1)
    # a compound the document writes with its hyphen keeps it
    assert join_hyphenation("o guarda• redes e o guarda-redes") == ("o guarda-redes\ne o guarda-redes", 1)
    # a bullet between spaces, or before a capital, is no hyphen
    assert join_hyphenation("o clube • sede e o estádio") == ("o clube • sede e o estádio", 0)
    assert join_hyphenation("Faro•\nOlhão") == ("Faro•\nOlhão", 0)


def test_running_header_needs_repeats():
    assert remove_running_headers("Capítulo\ntexto\nCapítulo\n", 3) == ("Capítulo\ntexto\nCapítulo\n", 0)


def test_hyphenation_joins_words_but_keeps_known_compounds():
    text = "uma associa-\ntiva e o guarda-redes e o guarda-\nredes e o campeo-\n\nnato na pré-\n-época"
    assert join_hyphenation(text) == (
        "uma associativa\ne o guarda-redes e o guarda-redes\ne o campeonato\nna pré-época",
        4,
    )
    # An upper-case continuation is a new sentence or a name, not a split word.
    assert join_hyphenation("Faro-\nLoulé") == ("Faro-\nLoulé", 0)


def test_wrapped_lines_become_paragraphs():
    wrapped = (
        "O Farense nasceu em Faro numa tarde de primavera, quando um\n"
        "grupo de rapazes decidiu fundar um clube de futebol para a\n"
        "cidade inteira.\n"
        "\n"
        "Segundo parágrafo."
    )
    text, joined = join_wrapped_lines(wrapped)
    assert text.split("\n\n") == [
        "O Farense nasceu em Faro numa tarde de primavera, quando um grupo de rapazes decidiu fundar um clube de futebol para a cidade inteira.",
        "Segundo parágrafo.",
    ]
    assert joined == 2


def test_page_break_inside_a_sentence_is_joined_only_across_a_page_break():
    cut = "O Farense recebeu no São Luís os grandes de Lisboa e do Porto, e os adeptos puderam ver"
    rest = "Benfica e Sporting ao vivo."
    joined = f"{cut} {rest}"
    assert join_wrapped_lines(f"{cut}\n{PAGE_BREAK}\n{rest}", across_pages=True)[0] == joined
    assert join_wrapped_lines(f"{cut}\n\n{PAGE_BREAK}\n\n{rest}", across_pages=True)[0] == joined
    # a blank line alone is a paragraph break, not a page break
    assert join_wrapped_lines(f"{cut}\n\n{rest}", across_pages=True)[0] == f"{cut}\n\n{rest}"
    # a short heading before a page break is not a cut sentence
    assert join_wrapped_lines(f"Capítulo II\n{PAGE_BREAK}\n{rest}", across_pages=True)[0] == f"Capítulo II\n\n{rest}"
    # the whole chain: a form feed, a page number and a running header between the halves
    page = f"{cut}\n\n- 13 -\n\fHISTÓRIA\n{rest}\n\nHISTÓRIA\ntexto.\n\nHISTÓRIA\nfim."
    assert clean_prose(page, "txt", OPTIONS) == f"{joined}\n\ntexto.\n\nfim."


def test_emoji_whitespace_nfc():
    assert remove_emoji("Golo ⚽🦁 do Farense ⚫⚪ © 2024") == ("Golo  do Farense  © 2024", 4)
    assert normalize_whitespace("a\u00a0\u00a0b \t c  \n\n\n\nd ,e ")[0] == "a b c\n\nd,e"
    assert to_nfc("Sa\u0303o") == ("São", 1)


def test_html_drops_boilerplate_and_keeps_text():
    page = """<!DOCTYPE html><html><head><title>Site</title><style>p{}</style><script>var x = "segredo";</script></head>
    <body><nav><a href="/">Início</a> | <a>Loja</a></nav><div class="cookie-banner">Aceite os cookies</div>
    <header>Cabeçalho</header><article><h1>Taça UEFA</h1><p>O Farense defrontou o Lyon em 1995&nbsp;&ndash; a estreia
    europeia.<br>Foi em <em>Faro</em> &amp; em Lyon.</p><table><tr><th>Jogo</th><th>Resultado</th></tr>
    <tr><td>Farense &ndash; Lyon</td><td>0-1</td></tr></table></article><footer>&copy; 2024 Todos os direitos reservados</footer></body></html>"""
    text = clean_prose(page, "html", OPTIONS)
    assert text.split("\n\n") == [
        "Taça UEFA",
        "O Farense defrontou o Lyon em 1995 – a estreia europeia. Foi em Faro & em Lyon.",
        "Jogo: Farense – Lyon; Resultado: 0-1.",
    ]
    for boilerplate in ("segredo", "Início", "cookies", "Cabeçalho", "direitos", "Site"):
        assert boilerplate not in text
    assert html_to_text("<p>a</p>")[1] == 1


def test_markdown_to_prose():
    md = """# Estádios 🏟️

O **Estádio de São Luís** é a _casa_ do [Farense](http://exemplo.pt). ![emblema](e.png)

| Época | Posição |
|---|:--:|
| 1994/95 | 5.º |

- primeiro item
- segundo *item*

> uma citação
***
"""
    text = clean_prose(md, "md", OPTIONS)
    assert text.split("\n\n") == [
        "Estádios",
        "O Estádio de São Luís é a casa do Farense.",
        "Época: 1994/95; Posição: 5.º.",
        "primeiro item",
        "segundo item",
        "uma citação",
    ]
    assert markdown_to_text("texto simples")[1] == 0


def test_scanned_page_cleans_up():
    page = (
        "HISTÓRIA DO FARENSE\r\n\r\nO clube cresceu depressa e a vida associa-\r\ntiva animava a cidade,\r\n"
        "com bailes e sessões solenes que juntavam os só\u00adcios mais\r\nantigos.\r\n\r\n•\r\n12\r\n\x0c"
        "HISTÓRIA DO FARENSE\r\nNovo parágrafo\x07 com   espaços.\r\n\r\n- 13 -\r\nHISTÓRIA DO FARENSE\r\n"
    )
    counts = {}
    text = clean_prose(page, "txt", OPTIONS, counts)
    assert text == (
        "O clube cresceu depressa e a vida associativa animava a cidade, com bailes e sessões solenes que "
        "juntavam os sócios mais antigos.\n\nNovo parágrafo com espaços."
    )
    for step in (
        "line_endings",
        "soft_hyphens",
        "control_chars",
        "page_numbers",
        "running_headers",
        "stray_bullets",
        "hyphenation",
        "wrapped_lines",
    ):
        assert counts[step] > 0, step


@pytest.mark.parametrize("fmt", ["txt", "md", "html"])
def test_cleaning_is_idempotent_on_small_inputs(fmt):
    samples = {
        "txt": "Linha um do texto que foi\npartido a meio.\n\n12\n\nOutra linha Ã©poca √° ⚽",
        "md": "# Título\n\nTexto **forte** e [ligação](x).\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- item",
        "html": "<p>Primeiro&nbsp;parágrafo</p><p>Segundo <b>forte</b></p><script>x</script>",
    }
    once = clean_prose(samples[fmt], fmt, OPTIONS)
    # Clean text is plain text: cleaning it again, as the cleaner would read it, changes nothing.
    assert clean_prose(once, "txt", OPTIONS) == once
    if fmt != "html":  # (clean text is no longer HTML)
        assert clean_prose(once, fmt, OPTIONS) == once


def test_switches_turn_steps_off():
    off = CleaningOptions(fix_mojibake=False, remove_emoji=False)
    assert clean_prose("A Ã©poca ⚽", "txt", off) == "A Ã©poca ⚽"
