"""Domain core of the CMK rollout: everything that needs no Functions runtime.

Resource ids and key URIs, preflight rules, the typed facts activities pass around, the Azure client factory and
the ARM async-operation helpers. Activities and orchestrators both build on it; it never imports azure.functions.
"""
