"""Registration's request bodies shared by the API and the spreadsheet import: one set of
field rules for a registration, however it arrives."""

from __future__ import annotations

from typing import Any

from pydantic import EmailStr, Field

from shared.bodies import RequestBody
from shared.contracts.registration import Attendance, DirectoryField, Interval, OrganisationType

_Body = RequestBody


class Representative(_Body):
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr
    phone: str | None = Field(default=None, max_length=50)
    role: str | None = Field(default=None, max_length=200)


class Profile(_Body):
    organisation_type: OrganisationType
    name: str = Field(min_length=1, max_length=300)
    country: str = Field(min_length=2, max_length=2, description="ISO 3166-1 alpha-2")
    sectors: list[str] = Field(default_factory=list, max_length=30)
    technologies: list[str] = Field(default_factory=list, max_length=50)
    value_chain_position: str | None = Field(default=None, max_length=200)
    markets: list[str] = Field(default_factory=list, max_length=50)
    offers: list[str] = Field(default_factory=list, max_length=20)
    requests: list[str] = Field(default_factory=list, max_length=20)
    attendance: Attendance = Attendance.ON_SITE
    availability: list[Interval] = Field(default_factory=list, max_length=50)
    representatives: list[Representative] = Field(min_length=1, max_length=10)
    published: list[DirectoryField] = Field(
        default_factory=lambda: list(DirectoryField),
        description="what the participant directory shows besides name and type",
    )

    def split(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        data = self.model_dump(mode="json")
        return data, data.pop("representatives")


class NewRegistration(Profile):
    support_office: str | None = Field(
        default=None,
        max_length=100,
        description="one of the event's support offices; by default the country rule's",
    )

    def split(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        data, representatives = super().split()
        data.pop("support_office")
        return data, representatives
