"""Private values and credentials masked in the texts people read (error texts, log lines)."""

from core.masking import mask_error, mask_private, private_values, redact_text


def test_a_private_value_is_masked_wherever_it_appears_to_its_last_four_characters():
    text = "card pm_card_SECRET123 refused; retry pm_card_SECRET123 later"
    assert mask_private(text, ["pm_card_SECRET123"]) == "card ••••T123 refused; retry ••••T123 later"


def test_values_bound_for_a_block_are_masked_inside_it_only():
    with private_values(["pm_card_SECRET123", None, ""]):
        assert mask_private("got pm_card_SECRET123") == "got ••••T123"
        with private_values(["other-secret-9"]):
            assert mask_private("pm_card_SECRET123 other-secret-9") == "••••T123 ••••et-9"
    assert mask_private("got pm_card_SECRET123") == "got pm_card_SECRET123"


def test_a_value_inside_another_is_masked_with_the_longer_one_and_very_short_values_are_left_alone():
    assert mask_private("tok_visa_SECRET123", ["tok_visa", "tok_visa_SECRET123"]) == "••••T123"
    assert mask_private("order 12 of 123", ["12"]) == "order 12 of 123"


def test_an_error_text_loses_private_values_and_credentials_of_a_known_shape():
    error = mask_error("refused pm_card_SECRET123 with secret=whsec_abc and tok_timeout", ["pm_card_SECRET123"])
    assert error == "refused ••••T123 with secret=[redacted] and tok_[redacted]"
    assert redact_text("Authorization: Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b") == ("Authorization: [redacted]")


def test_every_credential_shape_is_redacted_whatever_its_case_and_other_text_is_left_as_it_is():
    assert redact_text("PASSWORD=hunter22 X-Api-Key: abc123") == "PASSWORD=[redacted] X-Api-Key: [redacted]"
    assert redact_text("BEARER 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b") == "BEARER [redacted]"
    # (?i) folds the long s to s, and so does the check that lets a text skip a pattern
    long_s = "\N{LATIN SMALL LETTER LONG S}"
    assert redact_text(f"{long_s}ecret=abc") == f"{long_s}ecret=[redacted]"
    assert redact_text("amqp://guest:hunter22@broker:5672//") == "amqp://guest:[redacted]@broker:5672//"
    line = "webhook delivery 067ab0e4 to endpoint f767f41d: 204 in 4 ms"
    assert redact_text(line) == line
