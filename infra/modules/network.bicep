// The virtual network of the vnetEnabled option: one subnet for the app, one for private endpoints.
//
// Flex Consumption integrates an app in a subnet delegated to Microsoft.App/environments (not
// Microsoft.Web/serverFarms, the delegation of the other plans), used by that one plan only.
// The app's outbound traffic goes through it: the storage private endpoints in the second
// subnet, and ARM, Microsoft Entra ID and Application Insights over the subnet's outbound path.

@description('Virtual network name.')
param name string

@description('Azure region.')
param location string

@description('Tags for the network.')
param tags object = {}

@description('Address space of the network; the two subnets are its first two /24s.')
param addressPrefix string = '10.0.0.0/16'

var appSubnetName = 'app'
var privateEndpointSubnetName = 'private-endpoints'

resource vnet 'Microsoft.Network/virtualNetworks@2023-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: appSubnetName
        properties: {
          addressPrefix: cidrSubnet(addressPrefix, 24, 0)
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: privateEndpointSubnetName
        properties: {
          addressPrefix: cidrSubnet(addressPrefix, 24, 1)
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

output id string = vnet.id
output name string = vnet.name
output appSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, appSubnetName)
output privateEndpointSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, privateEndpointSubnetName)
