"""Follow-up to baseline registration (SimpleITK / itk-elastix): the longitudinal issue builds it.

Nothing here yet; the package exists so the component has its place in the layout.
"""
