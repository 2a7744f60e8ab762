"""The example service descriptions and X-Road's schemas (xroad/), shipped as gateway.descriptions.

A package only so that an installed wheel and an editable checkout both reach these files through
importlib.resources (gateway.resources); nothing here is code.
"""
