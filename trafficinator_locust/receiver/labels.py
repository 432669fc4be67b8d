"""Matomo's English report labels for the dimensions the receiver reports: countries, languages,
browsers, device types, referrer types, hours.

Why a table here: Matomo translates codes into labels when the Reporting API answers (its Intl
data, from CLDR, and DeviceDetector's names); the receiver has neither, so it carries the English
labels of the codes the packaged catalogue (``core/catalog``) can produce and a rule for the rest,
the one Matomo falls back to:

- countries (plugins/UserCountry/functions.php ``countryTranslate``, core/Intl): the CLDR English
  name; ``xx`` is "Unknown"; a code not in the table answers its upper-cased code.
- languages (plugins/UserLanguage/functions.php ``languageTranslate``, ``languageTranslateWithCode``):
  "English - United States (en-us)", "French (fr)"; an unknown language is "Language code xx".
- device types (plugins/DevicesDetection/functions.php ``getDeviceTypeLabel``): "Desktop",
  "Smartphone", "Tablet"...; "Unknown" for the rest.
- referrer types (plugins/Referrers/functions.php ``getReferrerTypeLabel``): "Direct Entry",
  "Search Engines", "Websites", "Campaigns", "Social Networks", with Matomo's type ids
  (``Common::REFERRER_TYPE_*``).
- hours (plugins/VisitTime/functions.php ``getTimeLabel``, ``Intl_NHoursShort``): ``"7h"``.

Example::

    language_label("en-us")  # "English - United States (en-us)"
    country_label("fr")  # "France"
"""

from __future__ import annotations

__all__ = [
    "REFERRER_TYPE_LABELS",
    "REFERRER_TYPE_IDS",
    "LANGUAGE_TO_COUNTRY",
    "country_label",
    "language_label",
    "hour_label",
]

REFERRER_TYPE_LABELS = {
    "direct": "Direct Entry",
    "search": "Search Engines",
    "website": "Websites",
    "campaign": "Campaigns",
    "social": "Social Networks",
    "ai": "AI Assistants",
}
"""``getReferrerTypeLabel``: the label of each referrer type (segment value ``referrerType==<key>``)."""
REFERRER_TYPE_IDS = {"direct": 1, "search": 2, "website": 3, "campaign": 6, "social": 7, "ai": 8}
"""``Common::REFERRER_TYPE_*``: the ``referrer_type`` metadata of a ``Referrers.getReferrerType`` row."""

LANGUAGE_TO_COUNTRY = {
    "bg": "bg", "ca": "es", "cs": "cz", "da": "dk", "de": "de", "el": "gr", "es": "es", "et": "ee",
    "fa": "ir", "fi": "fi", "fr": "fr", "he": "il", "hr": "hr", "hu": "hu", "id": "id", "is": "is",
    "it": "it", "ja": "jp", "ko": "kr", "lt": "lt", "lv": "lv", "mk": "mk", "ms": "my", "nb": "no",
    "nl": "nl", "nn": "no", "no": "no", "pl": "pl", "pt": "pt", "ro": "ro", "ru": "ru", "sk": "sk",
    "sl": "si", "sq": "al", "sr": "rs", "sv": "se", "th": "th", "tr": "tr", "uk": "ua",
}  # fmt: skip
"""core/DataFiles/LanguageToCountry.php: the country Matomo guesses for a language sent without a
region ("en" and "zh" are left out on purpose there)."""

_COUNTRIES = {
    "ar": "Argentina", "at": "Austria", "au": "Australia", "be": "Belgium", "br": "Brazil",
    "ca": "Canada", "ch": "Switzerland", "cn": "China", "cz": "Czechia", "de": "Germany",
    "dk": "Denmark", "ee": "Estonia", "eg": "Egypt", "es": "Spain", "fi": "Finland", "fr": "France",
    "gb": "United Kingdom", "gr": "Greece", "hr": "Croatia", "hu": "Hungary", "id": "Indonesia",
    "ie": "Ireland", "il": "Israel", "in": "India", "ir": "Iran", "is": "Iceland", "it": "Italy",
    "jp": "Japan", "kr": "South Korea", "lt": "Lithuania", "lv": "Latvia", "mk": "North Macedonia",
    "mx": "Mexico", "my": "Malaysia", "ng": "Nigeria", "nl": "Netherlands", "no": "Norway",
    "nz": "New Zealand", "ph": "Philippines", "pl": "Poland", "pt": "Portugal", "ro": "Romania",
    "rs": "Serbia", "ru": "Russia", "se": "Sweden", "si": "Slovenia", "sk": "Slovakia",
    "al": "Albania", "th": "Thailand", "tr": "Türkiye", "ua": "Ukraine", "us": "United States",
    "vn": "Vietnam", "za": "South Africa",
}  # fmt: skip
"""CLDR English country names (Matomo's ``Intl_Country_XX``) of the catalogue's countries and the
guesses of :data:`LANGUAGE_TO_COUNTRY`."""

_LANGUAGES = {
    "ar": "Arabic", "bg": "Bulgarian", "ca": "Catalan", "cs": "Czech", "da": "Danish", "de": "German",
    "el": "Greek", "en": "English", "es": "Spanish", "et": "Estonian", "fa": "Persian", "fi": "Finnish",
    "fr": "French", "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian",
    "id": "Indonesian", "is": "Icelandic", "it": "Italian", "ja": "Japanese", "ko": "Korean",
    "lt": "Lithuanian", "lv": "Latvian", "nb": "Norwegian Bokmål", "nl": "Dutch", "no": "Norwegian",
    "pl": "Polish", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sk": "Slovak",
    "sl": "Slovenian", "sr": "Serbian", "sv": "Swedish", "th": "Thai", "tr": "Turkish",
    "uk": "Ukrainian", "vi": "Vietnamese", "zh": "Chinese",
}  # fmt: skip
"""CLDR English language names (Matomo's ``Intl_Language_xx``)."""


def country_label(code: str) -> str:
    """``UserCountry.getCountry``'s label of a lower-case ISO code ("Unknown" for ``xx``)."""
    if code in ("", "xx"):
        return "Unknown"
    return _COUNTRIES.get(code, code.upper())


def _language_name(code: str) -> str:
    if code in ("", "xx"):
        return "Unknown"
    return _LANGUAGES.get(code) or f"Language code {code}"


def language_label(code: str) -> str:
    """``languageTranslateWithCode``: "English - United States (en-us)", "French (fr)"."""
    language, _, country = code.partition("-")
    name = _language_name(language)
    if country and country != language:
        if country not in _COUNTRIES:
            return f"{name} ({language})"
        return f"{name} - {_COUNTRIES[country]} ({code})"
    return f"{name} ({language})"


def hour_label(hour: int) -> str:
    """``getTimeLabel``: ``Intl_NHoursShort`` in English, ``"7h"``."""
    return f"{hour}h"
