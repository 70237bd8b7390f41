"""sql --offline prints a literal's % as migrate runs it, not psycopg's %% (issue 16, LOW)."""

from bitloot_lite.offline import _inline


def test_a_literal_with_percent_in_a_statement_with_parameters():
    # what psycopg runs for this statement: '100% done' (pyformat doubles every %)
    assert _inline("UPDATE t SET a = '100%% done' WHERE b = %s", (1,)) == (
        "UPDATE t SET a = '100% done' WHERE b = 1")
    assert _inline("UPDATE t SET a = '100% done' WHERE b = ?", (1,)) == (
        "UPDATE t SET a = '100% done' WHERE b = 1")
