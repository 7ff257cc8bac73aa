// Log Analytics and a workspace-based Application Insights component.
//
// Local (instrumentation key) authentication is off: the Functions host sends telemetry with
// the app's identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING), which needs the Monitoring
// Metrics Publisher role on this component (granted in roles-app.bicep). The connection string
// still carries the instrumentation key, but with local auth off that key alone cannot write.

@description('Log Analytics workspace name.')
param logAnalyticsName string

@description('Application Insights component name.')
param applicationInsightsName string

@description('Azure region.')
param location string

@description('Tags for both resources.')
param tags object = {}

@description('Days Log Analytics keeps data.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource component 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

output applicationInsightsId string = component.id
output applicationInsightsName string = component.name
output connectionString string = component.properties.ConnectionString
output logAnalyticsName string = workspace.name
