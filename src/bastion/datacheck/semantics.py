"""What a column holds, from its name (in English, German, French, Spanish, Italian, Dutch,
Polish and Swedish) and, where a name alone is ambiguous, the shape of its values: direct
identifiers (names, addresses, identity numbers), the quasi-identifiers whose combination can
single a person out (age, birth date, postcode, sex, …), and hints that tell the detectors what a
column's bare numbers are (a column "bsn" holds Dutch BSNs even though nine digits pass the
11-proef by chance one time in eleven)."""

from __future__ import annotations

import re
import unicodedata

# semantic -> words; a word matches a whole token of the column name, the whole name with its
# separators removed, or (five letters and more) a part of that joined name
_WORDS: dict[str, tuple[str, ...]] = {
    # detector hints (keys of detectors.KINDS)
    "email": ("email", "mail", "emailaddress", "correo", "courriel", "epost", "emailadres"),
    "phone": (
        "phone", "telephone", "tel", "mobile", "cell", "cellphone", "fax", "phonenumber",
        "telefon", "telefonnummer", "handy", "mobil", "portable", "telefono", "movil",
        "cellulare", "telefoon", "mobiel", "telefonu", "komorka", "mobilnummer", "msisdn",
    ),
    "credit_card": (
        "creditcard", "cardnumber", "ccnumber", "cardno", "pan", "kreditkarte",
        "kartennummer", "numerocarte", "tarjeta", "cartadicredito", "creditcardnumber",
    ),
    "iban": ("iban", "bankaccount", "kontonummer", "rekeningnummer", "numerocuenta"),
    "us_ssn": ("ssn", "socialsecurity", "socialsecuritynumber"),
    "uk_nino": ("nino", "nationalinsurance", "nationalinsurancenumber", "ninumber"),
    "de_tax_id": ("steuerid", "steueridentifikationsnummer", "idnr", "steuernummer"),
    "fr_nir": ("nir", "numerosecu", "securitesociale", "numerosecuritesociale", "insee"),
    "es_dni": ("dni", "nif"),
    "es_nie": ("nie",),
    "it_fiscal_code": ("codicefiscale", "codfisc"),
    "nl_bsn": ("bsn", "burgerservicenummer", "sofinummer"),
    "pl_pesel": ("pesel",),
    "se_personnummer": ("personnummer", "personnr", "pnr", "samordningsnummer"),
    "in_aadhaar": ("aadhaar", "aadhar", "aadhaarnumber"),
    "ip_address": ("ip", "ipaddress", "ipaddr", "clientip", "remoteaddr", "srcip", "sourceip"),
    # direct identifiers found by name and value shape
    "person_name": (
        "firstname", "givenname", "lastname", "surname", "familyname", "fullname", "middlename",
        "maidenname", "forename", "vorname", "nachname", "familienname", "geburtsname",
        "prenom", "nomdefamille", "nombre", "apellido", "apellidos", "cognome", "voornaam",
        "achternaam", "imie", "nazwisko", "fornamn", "efternamn", "tussenvoegsel",
        "customername", "clientname", "patientname", "employeename", "cardholder",
        "holdername", "accountholder", "contactname", "personname",
    ),
    "address": (
        "address", "addr", "streetaddress", "street", "addressline", "address1", "address2",
        "adresse", "anschrift", "strasse", "calle", "direccion", "domicilio", "indirizzo",
        "adres", "straat", "ulica", "gatuadress", "postadresse", "homeaddress",
    ),
    # quasi-identifiers
    "date_of_birth": (
        "dob", "birthdate", "dateofbirth", "birthday", "geburtsdatum", "geburtstag",
        "datenaissance", "datedenaissance", "fechanacimiento", "fechadenacimiento",
        "datanascita", "datadinascita", "geboortedatum", "dataurodzenia", "fodelsedatum",
        "fodelsedag",
    ),
    "birth_year": (
        "birthyear", "yearofbirth", "yob", "geburtsjahr", "anneenaissance", "anonacimiento",
        "annonascita", "geboortejaar", "rokurodzenia", "fodelsear",
    ),
    "age": ("age", "alter", "edad", "eta", "leeftijd", "wiek", "alder", "ageyears", "ageinyears"),
    "sex": (
        "sex", "gender", "geschlecht", "sexe", "genre", "sexo", "genero", "sesso", "genere",
        "geslacht", "plec", "kon", "kjonn",
    ),
    "postcode": (
        "zip", "zipcode", "postcode", "postalcode", "postleitzahl", "plz", "codepostal",
        "codigopostal", "cap", "postnummer", "kodpocztowy", "postnr", "postcodenl",
    ),
    "nationality": (
        "nationality", "citizenship", "staatsangehorigkeit", "nationalite", "nacionalidad",
        "nazionalita", "nationaliteit", "obywatelstwo", "medborgarskap",
    ),
    "ethnicity": ("ethnicity", "race", "ethnic", "ethnie", "etnia", "etniciteit", "etnicitet"),
    "marital_status": (
        "maritalstatus", "familienstand", "etatcivil", "situationfamiliale", "estadocivil",
        "statocivile", "burgerlijkestaat", "stancywilny", "civilstand",
    ),
}  # fmt: skip

# words that are too short or too common to match inside a joined name
_WHOLE_ONLY = {"cap", "pan", "eta", "kon", "tel", "nie", "nir", "dni", "nif", "ip", "age", "sex"}
# words too common in other senses to match anywhere but as the whole name ("market_cap")
_EXACT_ONLY = {"cap", "pan", "eta", "kon", "cell"}
# a bare "name" (nom, nombre, …) is a person's name only if its values look like one, and never
# next to one of these words
_NAME_WORDS = {"name", "nom", "nombre", "nome", "naam", "namn", "nazwa", "imie"}
_NOT_PERSON = {
    "product", "file", "filename", "model", "feature", "company", "brand", "host", "hostname",
    "domain", "item", "column", "table", "city", "street", "country", "category", "class",
    "dataset", "project", "app", "bank", "org", "organisation", "organization", "business",
    "firm", "shop", "store", "device", "user", "username", "login", "screen", "display",
    "service", "team", "group", "field", "type", "label", "tag", "image", "sheet",
    "entreprise", "firma", "empresa", "azienda", "bedrijf", "produkt", "producto", "prodotto",
    "ville", "stadt", "ciudad", "citta", "stad", "miasto", "region", "state", "department",
}  # fmt: skip

QUASI_IDENTIFIERS = (
    "age",
    "date_of_birth",
    "birth_year",
    "postcode",
    "sex",
    "nationality",
    "ethnicity",
    "marital_status",
)
DIRECT_IDENTIFIERS = ("person_name", "address")


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return plain.replace("ß", "ss").replace("ł", "l").replace("ø", "o").lower()


def tokens(column: str) -> tuple[list[str], str]:
    """The words of a column name (snake, kebab, camel case, spaces) and the name joined."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", column[:200])
    words = [w for w in re.split(r"[^a-z0-9]+", _fold(spaced)) if w]
    return words, "".join(words)


def column_semantic(column: str) -> str | None:
    """What the name of a column says it holds (a key of _WORDS), or None. A bare "name" is
    "name?" — a person's name only if the values look like one (see looks_like_person_name)."""
    words, joined = tokens(column)
    if not joined:
        return None
    best: tuple[int, str] | None = None
    for semantic, vocabulary in _WORDS.items():
        for word in vocabulary:
            if word == joined or (word in words and word not in _EXACT_ONLY):
                score = 3
            elif word not in _WHOLE_ONLY and len(word) >= 5 and word in joined:
                score = 2
            else:
                continue
            score = score * 100 + len(word)
            if best is None or score > best[0]:
                best = (score, semantic)
    if best is not None:
        semantic = best[1]
        if semantic == "person_name" and set(words) & _NOT_PERSON:
            return None
        return semantic
    if set(words) & _NAME_WORDS and not set(words) & _NOT_PERSON:
        return "name?"
    return None


# Value shapes, written for RE2 (pyarrow.compute) and Python's re alike.
# A person's name: one to five words of letters (apostrophes, hyphens, dots inside), the first
# capitalised, no digits.
PERSON_NAME_PATTERN = r"^\s*\p{Lu}[\p{L}'’.\-]*(?:\s+[\p{L}'’.\-]+){0,4}\s*$"
# An address line: a number and a word of at least three letters.
ADDRESS_PATTERN = r"\d.*\p{L}{3,}|\p{L}{3,}.*\d"
