"""The regular expressions and word lists behind `pii.PIIDetector`, kept apart so they can be read.

Candidates are deliberately generous; validators in pii.py (Luhn, mod-97, octets, digit counts)
and the learned vocabulary reject what is not personal data.
"""

from __future__ import annotations

import regex as re

URL = re.compile(r"(?i)\b(?:https?://|www\.)[^\s<>\"']+")
EMAIL = re.compile(r"(?i)\b[\w.+'-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,24}\b")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?)\b")
CARD = re.compile(r"(?<![\d+-])\d(?:[ -]?\d){11,18}(?![\d-])")
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
IPV6 = re.compile(r"(?i)(?<![\w:])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?![\w:])")
PHONE = re.compile(
    r"(?i)(?<![\w+])(?:\+|00)?\(?\d[\d ().\-/]{5,22}\d(?:\s?(?:x|ext\.?|\#)\s?\d{1,6})?(?!\w)"
)

_MONTHS = (
    "jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    "sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
DATE = re.compile(
    rf"(?i)\b(?:\d{{4}}-\d{{1,2}}-\d{{1,2}}|\d{{1,2}}[/.-]\d{{1,2}}[/.-](?:\d{{4}}|\d{{2}})"
    rf"|(?:{_MONTHS})\.? \d{{1,2}}(?:st|nd|rd|th)?,? \d{{4}}"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?(?: of)? (?:{_MONTHS})\.?,? \d{{4}})\b"
)
DOB_CUE = re.compile(
    r"(?i)\b(?:born|birth|dob|d\.o\.b|birthday|b-day|bday|geboren|née|né|nacimiento|nascita)"
)
ACCOUNT = re.compile(
    r"(?i)\b(?:account|acct|a/c|acc|customer|sort[- ]code|member(?:ship)?)\.?"
    r"(?: (?:number|no\.?|num|nr|id|#))?(?: is|:| =)? ?#?(?P<value>\d[\d -]{4,22}\d)\b"
)


def _words(text: str) -> list[str]:
    """A word list written as a paragraph, so long lists stay short on screen."""
    return text.split()


# --- names ----------------------------------------------------------------------------------
_CAP = r"(?:\p{Lu}\p{Ll}*['’]?)?\p{Lu}\p{Ll}+(?:-\p{Lu}\p{Ll}+)*"  # Anna, McDonald, O'Brien
_LOW = r"\p{Ll}{2,}(?:-\p{Ll}{2,})*"
PARTICLES = frozenset(
    str.split("van von der den de del della di da dos das du la le bin ibn al el ten ter y")
)
_PARTICLE = r"(?:van|von|der|den|de|del|della|di|da|dos|das|du|la|le|bin|ibn|al|el|ten|ter|y)"
_SUFFIX = r"(?:,? (?:Jr|Sr|II|III|IV|PhD|MD|DDS|DVM|Esq)\.?)?"
NAME_RUN = re.compile(rf"{_CAP}(?: (?:{_PARTICLE} )*{_CAP}){{0,3}}{_SUFFIX}")
LOWER_NAME_RUN = re.compile(rf"{_LOW}(?: {_LOW})?(?![\p{{L}}'’])")
WORD = re.compile(r"[\p{L}'’]+")
HONORIFIC = re.compile(
    r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Madam|Dame|Lady|Lord|Herr|Frau|Mme|Mlle|Sr|Sra|Srta"
    r"|Sig|Sig\.ra|Dott)\.? "
)
NAME_IS = re.compile(r"(?i)\b(?:my name is|my name's|name is|name:|i am called|i'm called)\s+")
STRONG_CUE = re.compile(
    r"(?i)\b(?:called|named|this is|signed|regards,?|sincerely,?|cardholder|card holder|"
    r"account holder|beneficiary|recipient|payee|on behalf of)\s+"
)
GENERIC_CUE = re.compile(
    r"(?i)\b(?:to|from|for|with|by|dear|hi|hello|hey|thanks|thank you|contact|ask for|"
    r"speak to|speak with|i am|i'm|me,?|and|or)\s+"
)

_STOP = _words(
    """a about above after again against all also am an and any are as at be because been
before being below between both but by can could did do does doing down during each few for from
further had has have having he her here hers herself him himself his how i if in into is it its
itself just me more most my myself no nor not now of off on once only or other our ours ourselves
out over own same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which while
who whom why will with would you your yours yourself yourselves hi hello hey dear thanks thank
please help yes ok okay sorry im ive cant dont wont whats hows may might must shall let"""
)
_CALENDAR = _words(
    """january february march april may june july august september october november
december monday tuesday wednesday thursday friday saturday sunday today tomorrow yesterday
christmas easter"""
)
_PLACES_BRANDS = _words(
    """america american europe european eu uk usa us britain british england english
china chinese japan india germany german france french spain spanish italy italian russia russian
canada australia mexico brazil ireland irish scotland wales london paris berlin new york united
states kingdom north south east west street road avenue bank visa mastercard maestro amex express
apple google pay paypal android iphone ios app western union swift sepa atm pin iban bic euro
euros dollar dollars pound pounds gbp usd eur card cards account customer service support team
manager department internet online mobile phone email flat studio apartment unit suite"""
)
CAPITALISED_EXCLUDED = frozenset(_STOP + _CALENDAR + _PLACES_BRANDS)

# --- addresses ------------------------------------------------------------------------------
_STREET_TYPES = _words(
    """alley allee annex arcade avenue ave bayou beach bend bluff bottom boulevard blvd
branch bridge brook burg bypass camp canyon cape causeway center centre circle cir cliff close
club common corner course court ct cove creek crescent cres crest crossing crossroad curve dale dam
divide drive dr estate expressway extension fall ferry field flat ford forest forge fork fort
freeway garden gardens gateway gate glen grange green grove harbor harbour haven heights highway
hwy hill hollow inlet island isle junction key knoll lake land landing lane ln light loaf lock
lodge loop mall manor meadow mews mill mission motorway mount mountain neck orchard oval overpass
parade park parkway pass passage path pike pine place pl plain plaza point port prairie radial
ramp ranch rapid rest ridge rise river road rd route row rue run shoal shore skyway spring spur
square sq station stravenue stream street st summit terrace ter throughway trace track trafficway
trail trailer tunnel turnpike underpass union vale valley viaduct view village ville vista walk
wall way well wharf yard"""
)
_TYPE = "(?:" + "|".join(sorted(_STREET_TYPES, key=len, reverse=True)) + ")s?"
_UNIT = r"(?:,? (?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|Room|Rm|\#)\.? ?\#?\w{1,5})"
_CITY = r"(?:\p{Lu}[\p{L}'’-]+)(?: \p{Lu}[\p{L}'’-]+){0,2}"
_US_ZIP = rf"(?:,? {_CITY},? (?:[A-Z]{{2}} )?\d{{5}}(?:-\d{{4}})?)"
_UK_POSTCODE = r"[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}"
_UK_TAIL = rf"(?:,? {_CITY},? {_UK_POSTCODE})"
_STREET_NAME = r"(?:\d+(?:st|nd|rd|th)|\p{Lu}[\p{L}'’.-]*)"
_UNIT_FIRST = r"(?:(?:Flat|Apartment|Apt|Studio|Unit|Suite)\.? \w{1,5},?\s)"
ANGLO = re.compile(
    rf"\b(?:{_UNIT_FIRST}?\d{{1,6}}[A-Za-z]?,? |{_UNIT_FIRST})(?:{_STREET_NAME} ){{1,4}}"
    rf"(?i:{_TYPE})\b\.?"
    rf"{_UNIT}?(?:{_US_ZIP}|{_UK_TAIL})?"
)
_COMPOUND = (
    r"(?:straße|strasse|str\.|weg|allee|platz|gasse|ring|damm|ufer|chaussee|steig|pfad|markt|"
    r"straat|laan|plein|hof|gracht|kade|dijk|singel|park)"
)
_EU_TAIL = r"(?:,? \d{4,5}(?: [A-Z]{2})? \p{Lu}[\p{L}'’-]+(?: \p{Lu}[\p{L}'’-]+)?)?"
GERMANIC = re.compile(
    rf"\b\p{{Lu}}[\p{{L}}-]*(?i:{_COMPOUND})(?: \p{{Lu}}[\p{{L}}-]*)?,? \d{{1,4}}[a-z]?"
    rf"(?:[/-]\d+)?"
    rf"{_EU_TAIL}"
)
_ROMANCE = (
    r"(?:rue|avenue|av\.|boulevard|bd|chemin|impasse|place|allée|quai|route|cours|passage|"
    r"square|via|viale|piazza|piazzale|corso|vicolo|largo|canale|calle|c\.|avenida|av\.|paseo|"
    r"plaza|ronda|camino|carrer|rambla|travesía|praça|rua)"
)
_ROMANCE_NAME = r"(?:(?:de|du|des|la|le|les|del|della|di|da|dos|d'|l')\s?|\p{Lu}[\p{L}'’-]+ ?){1,5}"
ROMANCE_NUMBER_FIRST = re.compile(
    rf"\b\d{{1,4}}(?: ?(?:bis|ter))?,? (?i:{_ROMANCE}) {_ROMANCE_NAME}{_EU_TAIL}"
)
_ROMANCE_STRICT = (  # street words that are not also English words: no number needed
    r"(?:rue|chemin|impasse|allée|quai|viale|piazza|piazzale|corso|vicolo|calle|avenida|"
    r"paseo|carrer|rambla|travesía|praça|rua)"
)
ROMANCE_NO_NUMBER = re.compile(
    rf"\b(?i:{_ROMANCE_STRICT}) (?:(?:de|du|des|la|le|del|di|da) )?"
    rf"\p{{Lu}}[\p{{L}}'’-]+(?: \p{{Lu}}[\p{{L}}'’-]+){{0,3}}"
)
ROMANCE_NAME_FIRST = re.compile(
    rf"\b(?i:{_ROMANCE}) {_ROMANCE_NAME},? \d{{1,4}}[a-z]?"
    rf"(?:,? (?:Piso|Puerta|Appartamento|Interno|Scala|Apt\.?) \w{{1,4}})?{_EU_TAIL}"
)
ADDRESS_PATTERNS = (ANGLO, GERMANIC, ROMANCE_NUMBER_FIRST, ROMANCE_NAME_FIRST, ROMANCE_NO_NUMBER)
