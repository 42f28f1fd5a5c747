# The element types every kernel is compiled for.
ctypedef fused floating:
    float
    double
