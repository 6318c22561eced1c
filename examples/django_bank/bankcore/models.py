"""Models of the bank's `core` app (label `core`, so its tables are `core_*`)."""

from django.db import models


class Branch(models.Model):
    """A branch of the bank (table `core_branch`)."""

    code = models.CharField(max_length=8, unique=True)
    name = models.CharField(max_length=100)

    def __str__(self) -> str:
        return f"{self.code} {self.name}"
