"""What every page's navigation needs to know."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from moderation.access import sees_cases
from moderation.review import may_review


def navigation(request: HttpRequest) -> dict[str, Any]:
    # A callable: templates ask it only on pages that show the navigation, and only once.
    user = request.user
    answer: dict[str, bool] = {}

    def cases_link() -> bool:
        if "cases" not in answer:
            answer["cases"] = sees_cases(user)
        return answer["cases"]

    def review_link() -> bool:
        if "review" not in answer:
            answer["review"] = may_review(user)
        return answer["review"]

    return {"sees_cases": cases_link, "may_review": review_link}
